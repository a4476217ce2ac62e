//! Active health checks: each provider type's free probe, with its credential,
//! marking a dead target down and a revived one up; and failover across dialects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::free_port;
use crate::support::gateway::{config, Gateway};
use crate::support::http::{exchange, post, Response};
use crate::support::upstream::{FakeUpstream, Recorded, Reply};

const CHAT: &str = r#"{"model":"main","messages":[{"role":"user","content":"hi"}]}"#;
const PROBING: &str = "    health_check: { interval: 100ms, failure_threshold: 2 }\n";

fn completion(text: &str) -> Reply {
    Reply::ok(
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
    )
}

async fn chat(gw: &Gateway) -> Response {
    exchange(gw.addr, &post("/v1/chat/completions", CHAT)).await
}

fn probes(up: &FakeUpstream) -> Vec<Recorded> {
    up.received()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect()
}

/// `main` on `primary` (priority 1) then `secondary` (priority 2).
const TWO_TIERS: &str = "models:\n  main:\n    targets:\n      - { provider: primary, model: m }\n      - { provider: secondary, model: m, priority: 2 }\n";

#[tokio::test]
async fn a_failing_probe_marks_an_openai_target_down_and_a_passing_one_up() {
    let alive = Arc::new(AtomicBool::new(true));
    let state = alive.clone();
    let primary =
        FakeUpstream::start(
            move |r| match (r.method.as_str(), state.load(Ordering::SeqCst)) {
                ("GET", true) => Reply::ok(json!({"object": "list", "data": []})),
                ("GET", false) => Reply::error(503, "server_error", "down"),
                _ => completion("from primary"),
            },
        )
        .await;
    let secondary = FakeUpstream::start(|_| completion("from secondary")).await;
    let gw = Gateway::start(&config(
        None,
        &format!(
            "providers:\n  primary:\n    type: openai\n    base_url: {}\n    api_key: sk-primary-key\n{PROBING}  secondary:\n    type: openai\n    base_url: {}\n{TWO_TIERS}",
            primary.url("/v1"),
            secondary.url("/v1"),
        ),
    ))
    .await;
    let before = probes(&primary).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = probes(&primary);
    let during = seen.len() - before;
    assert!(
        (3..=7).contains(&during),
        "one probe per 100 ms: {during} in 500 ms"
    );
    assert_eq!(seen[0].path, "/v1/models");
    assert_eq!(
        seen[0].header("authorization"),
        Some("Bearer sk-primary-key")
    );
    assert!(
        probes(&secondary).is_empty(),
        "a provider without health_check is not probed"
    );

    alive.store(false, Ordering::SeqCst);
    gw.wait_for_metric(r#"switchyard_upstream_healthy{provider="primary",target="primary/m"} 0"#)
        .await;
    let r = chat(&gw).await;
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "from secondary"
    );
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    assert!(primary.received().iter().all(|r| r.method == "GET"));

    alive.store(true, Ordering::SeqCst);
    gw.wait_for_metric(r#"switchyard_upstream_healthy{provider="primary",target="primary/m"} 1"#)
        .await;
    let r = chat(&gw).await;
    assert_eq!(r.json()["choices"][0]["message"]["content"], "from primary");
}

#[tokio::test]
async fn azure_is_probed_with_its_models_listing_and_api_key() {
    let azure = FakeUpstream::start(|_| Reply::ok(json!({"data": []}))).await;
    let gw = Gateway::start(&config(
        None,
        &format!(
            "providers:\n  az:\n    type: azure\n    endpoint: {}\n    api_key: azure-key-31337\n    api_version: \"2024-10-21\"\n{PROBING}models:\n  main:\n    targets:\n      - {{ provider: az, deployment: dep }}\n",
            azure.url(""),
        ),
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while probes(&azure).is_empty() {
        assert!(Instant::now() < deadline, "Azure was never probed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probe = &probes(&azure)[0];
    assert_eq!(probe.path, "/openai/models?api-version=2024-10-21");
    assert_eq!(probe.header("api-key"), Some("azure-key-31337"));
    assert_eq!(probe.header("authorization"), None);
    drop(gw);
}

#[tokio::test]
async fn bedrock_is_probed_with_a_connect_that_sends_nothing() {
    let bedrock =
        FakeUpstream::start(|_| Reply::error(500, "x", "a probe must not send a request")).await;
    let dead_port = free_port();
    let gw = Gateway::start(&config(
        None,
        &format!(
            "providers:\n  br:\n    type: bedrock\n    region: us-east-1\n    endpoint: {}\n    api_key: bedrock-key\n{PROBING}  gone:\n    type: bedrock\n    region: us-east-1\n    endpoint: http://127.0.0.1:{dead_port}\n    api_key: bedrock-key\n{PROBING}models:\n  main:\n    targets:\n      - {{ provider: br, model: m }}\n      - {{ provider: gone, model: m }}\n",
            bedrock.url(""),
        ),
    ))
    .await;
    gw.wait_for_metric(r#"switchyard_upstream_healthy{provider="gone",target="gone/m"} 0"#)
        .await;
    assert!(bedrock.connections.load(Ordering::SeqCst) >= 2);
    assert!(bedrock.received().is_empty(), "{:?}", bedrock.received());
    assert!(gw
        .metrics()
        .await
        .contains(r#"switchyard_upstream_healthy{provider="br",target="br/m"} 1"#));
}

#[tokio::test]
async fn openai_fails_over_to_azure_and_azure_to_bedrock() {
    let openai = FakeUpstream::start(|_| Reply::error(500, "server_error", "down")).await;
    let azure_calls = Arc::new(AtomicBool::new(true));
    let azure_ok = azure_calls.clone();
    let azure = FakeUpstream::start(move |_| {
        if azure_ok.load(Ordering::SeqCst) {
            completion("from azure")
        } else {
            Reply::error(503, "server_error", "down")
        }
    })
    .await;
    let bedrock = FakeUpstream::start(|_| {
        Reply::ok(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "from bedrock"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}
        }))
    })
    .await;
    let gw = Gateway::start(&config(
        None,
        &format!(
            "providers:\n  oa:\n    type: openai\n    base_url: {}\n    api_key: sk-oa\n  az:\n    type: azure\n    endpoint: {}\n    api_key: azure-key-31337\n    api_version: \"2024-10-21\"\n  br:\n    type: bedrock\n    region: us-east-1\n    endpoint: {}\n    access_key_id: AKIDEXAMPLE\n    secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\nmodels:\n  main:\n    targets:\n      - {{ provider: oa, model: gpt-4o }}\n      - {{ provider: az, deployment: gpt-4o-prod, priority: 2 }}\n      - {{ provider: br, model: \"anthropic.claude-3-haiku-20240307-v1:0\", priority: 3 }}\n",
            openai.url("/v1"),
            azure.url(""),
            bedrock.url(""),
        ),
    ))
    .await;
    let r = chat(&gw).await;
    assert_eq!(r.json()["choices"][0]["message"]["content"], "from azure");
    assert_eq!(r.header("x-switchyard-provider"), Some("az"));
    let seen = &azure.received()[0];
    assert_eq!(
        seen.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen.header("api-key"), Some("azure-key-31337"));
    assert_eq!(seen.json()["model"], "gpt-4o-prod");

    azure_calls.store(false, Ordering::SeqCst);
    let r = chat(&gw).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "from bedrock");
    assert_eq!(r.json()["model"], "anthropic.claude-3-haiku-20240307-v1:0");
    assert_eq!(r.header("x-switchyard-attempts"), Some("3"));
    let seen = &bedrock.received()[0];
    assert_eq!(
        seen.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert!(seen
        .header("authorization")
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
    assert_eq!(seen.json()["messages"][0]["content"][0]["text"], "hi");
}
