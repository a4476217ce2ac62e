//! OpenAI-compatible upstreams: what reaches them, what comes back, and how their
//! failures are mapped.

use serde_json::json;

use crate::support::gateway::{config, Gateway, KEY};
use crate::support::http::{exchange, post, Response};
use crate::support::upstream::{FakeUpstream, Reply};

const PROVIDER_KEY: &str = "sk-provider-secret-55555";

fn upstream_config(base_url: &str, timeouts: &str) -> String {
    config(
        None,
        &format!(
            "providers:\n  up:\n    type: openai\n    base_url: {base_url}\n    api_key: {PROVIDER_KEY}\nmodels:\n  gpt-4o:\n    targets:\n      - {{ provider: up, model: gpt-4o-2024-08-06 }}\n{timeouts}"
        ),
    )
}

/// A minimal chat request for `gpt-4o`.
async fn ask(gw: &Gateway) -> Response {
    exchange(
        gw.addr,
        &post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[]}"#,
        ),
    )
    .await
}

fn completion() -> serde_json::Value {
    json!({"id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}})
}

#[tokio::test]
async fn requests_are_rewritten_and_forwarded_with_the_provider_credential() {
    let up = FakeUpstream::start(|_| {
        let mut reply = Reply::ok(completion());
        if let Reply::Json { headers, .. } = &mut reply {
            for (n, v) in [
                ("openai-processing-ms", "42"),
                ("x-request-id", "req_upstream_1"),
                ("openai-organization", "org-hidden"),
                ("set-cookie", "__cf_bm=abc"),
                ("x-ratelimit-remaining-requests", "499"),
            ] {
                headers.push((n, v.to_string()));
            }
        }
        reply
    })
    .await;
    let gw = Gateway::start(&upstream_config(&up.url("/custom/v1/"), "")).await;
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"h\u00e9llo"}],"temperature":0.70,"x_unknown":{"keep":[1,2.50]}}"#;
    let auth = format!("Bearer {KEY}");
    let raw = crate::support::http::request(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("x-request-id", "client-req-7"),
            ("accept-encoding", "gzip"),
        ],
        body.as_bytes(),
    );
    let r = exchange(gw.addr, &raw).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "hello");
    assert_eq!(
        r.json()["model"],
        "gpt-4o-2024-08-06",
        "the upstream's model is kept"
    );
    // Response headers: ours, plus the allow-list.
    assert_eq!(r.header("x-request-id"), Some("client-req-7"));
    assert_eq!(r.header("x-switchyard-provider"), Some("up"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(r.header("openai-processing-ms"), Some("42"));
    assert_eq!(r.header("x-upstream-request-id"), Some("req_upstream_1"));
    for hidden in [
        "openai-organization",
        "set-cookie",
        "x-ratelimit-remaining-requests",
    ] {
        assert!(r.header(hidden).is_none(), "{hidden} leaked");
    }
    // What the upstream saw.
    let seen = &up.received()[0];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/custom/v1/chat/completions")
    );
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(seen.header("accept-encoding"), Some("identity"));
    assert_eq!(seen.header("x-request-id"), Some("client-req-7"));
    assert!(
        seen.headers.iter().all(|(_, v)| !v.contains(KEY)),
        "the virtual key was forwarded"
    );
    assert_eq!(
        String::from_utf8(seen.body.clone()).unwrap(),
        body.replace("\"gpt-4o\"", "\"gpt-4o-2024-08-06\""),
        "only the model changes, byte for byte"
    );
    let log = &gw.log_lines(1).await[0];
    assert_eq!(
        (log["provider"].as_str(), log["target"].as_str()),
        (Some("up"), Some("up/gpt-4o-2024-08-06"))
    );
    assert_eq!(
        (log["input_tokens"].as_u64(), log["output_tokens"].as_u64()),
        (Some(11), Some(2))
    );
    assert!(gw
        .raw_log()
        .iter()
        .all(|l| !l.contains(PROVIDER_KEY) && !l.contains(KEY)));
}

#[tokio::test]
async fn a_two_mebibyte_body_reaches_the_upstream_byte_intact() {
    let up = FakeUpstream::start(|_| Reply::ok(completion())).await;
    let gw = Gateway::start(&upstream_config(&up.url("/v1"), "")).await;
    // Non-ASCII, escapes and a large base64-like field, as real multimodal bodies have.
    let filler: String = (0..2 * 1024 * 1024 / 64)
        .map(|i| format!("{i:08}-ÄßÇ\\\"/+=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW"))
        .collect();
    let body =
        format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{filler}"}}]}}"#);
    assert!(body.len() > 2 * 1024 * 1024);
    let r = exchange(gw.addr, &post("/v1/chat/completions", &body)).await;
    assert_eq!(r.status, 200);
    let seen = &up.received()[0];
    let expected = body.replacen("\"gpt-4o\"", "\"gpt-4o-2024-08-06\"", 1);
    assert_eq!(seen.body.len(), expected.len());
    assert!(seen.body == expected.as_bytes(), "body changed in transit");
    assert_eq!(
        seen.header("content-length"),
        Some(expected.len().to_string().as_str())
    );
}

#[tokio::test]
async fn embeddings_are_forwarded() {
    let up = FakeUpstream::start(|_| {
        Reply::ok(json!({"object": "list", "model": "gpt-4o-2024-08-06",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}}))
    })
    .await;
    let gw = Gateway::start(&upstream_config(&up.url("/v1"), "")).await;
    let r = exchange(
        gw.addr,
        &post("/v1/embeddings", r#"{"model":"gpt-4o","input":"abc"}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["embedding"], json!([0.5, -0.25]));
    assert_eq!(up.received()[0].path, "/v1/embeddings");
    assert_eq!(up.received()[0].json()["model"], "gpt-4o-2024-08-06");
    assert_eq!(gw.log_lines(1).await[0]["input_tokens"], 3);
}

#[tokio::test]
async fn client_errors_pass_through_with_the_upstreams_status_and_message() {
    let up = FakeUpstream::start(|_| {
        Reply::error(
            400,
            "unsupported_parameter",
            "Unsupported parameter: 'max_tokens'.",
        )
    })
    .await;
    let gw = Gateway::start(&upstream_config(&up.url("/v1"), "")).await;
    let r = exchange(
        gw.addr,
        &post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[],"max_tokens":5}"#,
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "unsupported_parameter")
    );
    let id = r.header("x-request-id").unwrap();
    assert_eq!(
        r.json()["error"]["message"],
        format!("Unsupported parameter: 'max_tokens'. (request id: {id})")
    );
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(up.received().len(), 1, "client errors are not retried");
}

#[tokio::test]
async fn upstream_auth_and_model_failures_are_the_gateways_fault() {
    for (status, code) in [
        (401, "upstream_auth_failed"),
        (403, "upstream_auth_failed"),
        (404, "upstream_model_not_found"),
        (500, "upstream_error"),
        (503, "upstream_error"),
    ] {
        let up = FakeUpstream::start(move |_| Reply::error(status, "whatever", "upstream says no"))
            .await;
        let gw = Gateway::start(&upstream_config(&up.url("/v1"), "")).await;
        let r = ask(&gw).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (502, code),
            "upstream {status}"
        );
        assert_eq!(r.json()["error"]["type"], "server_error");
        assert!(!String::from_utf8_lossy(&r.body).contains(PROVIDER_KEY));
        assert_eq!(r.header("x-switchyard-provider"), Some("up"));
    }
}

#[tokio::test]
async fn upstream_rate_limits_become_429_with_retry_after() {
    let up = FakeUpstream::start(|_| Reply::Json {
        status: 429,
        headers: vec![("content-type", "application/json".into()), ("retry-after-ms", "2500".into())],
        body: json!({"error": {"message": "Rate limit reached for org-123", "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}).to_string(),
    })
    .await;
    let gw = Gateway::start(&upstream_config(&up.url("/v1"), "")).await;
    let r = ask(&gw).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (429, "rate_limit_exceeded")
    );
    assert_eq!(r.json()["error"]["type"], "tokens");
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(r.header("retry-after-ms"), Some("2500"));
    assert!(
        !String::from_utf8_lossy(&r.body).contains("org-123"),
        "account details leaked"
    );

    let quota = FakeUpstream::start(|_| Reply::Json {
        status: 429,
        headers: vec![],
        body: json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}).to_string(),
    })
    .await;
    let gw = Gateway::start(&upstream_config(&quota.url("/v1"), "")).await;
    let r = ask(&gw).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (429, "insufficient_quota")
    );
    // An exhausted account does not come back by waiting: no retry hint, and
    // the SDKs are told not to retry.
    assert!(r.header("retry-after").is_none());
    assert_eq!(r.header("x-should-retry"), Some("false"));
}

#[tokio::test]
async fn a_silent_upstream_times_out_with_504() {
    let up = FakeUpstream::start(|_| Reply::Silence).await;
    let gw = Gateway::start(&upstream_config(
        &up.url("/v1"),
        "routing:\n  timeouts: { first_byte: 150ms }\n",
    ))
    .await;
    let started = std::time::Instant::now();
    let r = ask(&gw).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (504, "upstream_timeout")
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let gw2 = Gateway::start(&upstream_config(
        &up.url("/v1"),
        "routing:\n  timeouts: { first_byte: 10s, total: 200ms }\n",
    ))
    .await;
    let r = ask(&gw2).await;
    assert_eq!(r.status, 504);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("total"));
}

#[tokio::test]
async fn a_refused_connection_is_a_502() {
    let port = crate::support::free_port();
    let gw = Gateway::start(&upstream_config(&format!("http://127.0.0.1:{port}/v1"), "")).await;
    let r = ask(&gw).await;
    assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_error"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["status"], 502);
    assert_eq!(log["error"], "upstream_error");
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let up = FakeUpstream::start(|_| Reply::ok(completion())).await;
    let gw = Gateway::start(&upstream_config(&up.url("/v1"), "")).await;
    for _ in 0..5 {
        let r = ask(&gw).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.received().len(), 5);
    let connections = up.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        connections <= 2,
        "{connections} connections for 5 sequential requests"
    );
}
