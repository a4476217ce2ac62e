//! Azure OpenAI both ways: OpenAI requests sent to an Azure deployment (a fake
//! Azure upstream checks the URL, api-version and credential), and Azure-shaped
//! requests (`/openai/deployments/{name}/...`) served by any provider.

use serde_json::json;

use crate::support::gateway::{check_config, config, Gateway, KEY};
use crate::support::http::{exchange, post, request, Conn, Events, Response};
use crate::support::upstream::{FakeUpstream, Recorded, Reply, StreamEnd};

const AZURE_KEY: &str = "azure-provider-key-31337";

/// `gpt-4o` on Azure deployment `gpt-4o-prod` (api-version 2024-10-21), and the
/// mock provider's `demo`.
fn azure_config(endpoint: &str) -> String {
    config(
        None,
        &format!(
            "providers:\n  az:\n    type: azure\n    endpoint: {endpoint}\n    api_key: {AZURE_KEY}\n    api_version: \"2024-10-21\"\n  mock:\n    type: mock\nmodels:\n  gpt-4o:\n    targets:\n      - {{ provider: az, deployment: gpt-4o-prod }}\n  demo:\n    targets:\n      - {{ provider: mock, model: mock-1 }}\n"
        ),
    )
}

/// Checks what every Azure request must look like on the wire.
fn assert_azure_request(seen: &Recorded, operation: &str) {
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path,
        format!("/openai/deployments/gpt-4o-prod/{operation}?api-version=2024-10-21")
    );
    assert_eq!(seen.header("api-key"), Some(AZURE_KEY));
    assert_eq!(seen.header("authorization"), None);
    assert!(
        seen.headers.iter().all(|(_, v)| !v.contains(KEY)),
        "the virtual key reached Azure"
    );
    assert_eq!(seen.json()["model"], "gpt-4o-prod");
}

/// Azure's real whole answer (trimmed from `azure-chat-basic.yaml`).
fn azure_completion() -> serde_json::Value {
    json!({"choices": [{"content_filter_results": {}, "finish_reason": "stop", "index": 0, "logprobs": null,
        "message": {"annotations": [], "content": "Hi there!", "refusal": null, "role": "assistant"}}],
        "created": 1759396891, "id": "chatcmpl-CM9n9OhFOl4lSSFwarLEIMnPrNWSP", "model": "gpt-5-nano-2025-08-07",
        "object": "chat.completion", "prompt_filter_results": [{"content_filter_results": {}, "prompt_index": 0}],
        "system_fingerprint": null,
        "usage": {"completion_tokens": 271, "prompt_tokens": 8, "total_tokens": 279}})
}

fn with_headers(mut reply: Reply, extra: &[(&'static str, &str)]) -> Reply {
    if let Reply::Json { headers, .. } = &mut reply {
        headers.extend(extra.iter().map(|(n, v)| (*n, v.to_string())));
    }
    reply
}

async fn chat(gw: &Gateway, body: &str) -> Response {
    exchange(gw.addr, &post("/v1/chat/completions", body)).await
}

#[tokio::test]
async fn openai_requests_reach_the_deployment_with_the_api_key() {
    let up = FakeUpstream::start(|_| {
        with_headers(
            Reply::ok(azure_completion()),
            &[
                ("apim-request-id", "8f2cae43"),
                ("x-ms-region", "East US 2"),
                ("x-ratelimit-limit-tokens", "-1"),
                ("x-ratelimit-remaining-requests", "99"),
                ("x-ms-deployment-name", "gpt-4o-prod"),
            ],
        )
    })
    .await;
    let gw = Gateway::start(&azure_config(&up.url(""))).await;
    let r = chat(
        &gw,
        r#"{"model":"gpt-4o","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hello!"}],"max_completion_tokens":50}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), azure_completion(), "the answer passes unchanged");
    assert_eq!(r.header("x-switchyard-provider"), Some("az"));
    assert_eq!(r.header("apim-request-id"), Some("8f2cae43"));
    for hidden in [
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ms-deployment-name",
    ] {
        assert!(r.header(hidden).is_none(), "{hidden} reached the client");
    }
    let seen = &up.received()[0];
    assert_azure_request(seen, "chat/completions");
    // 2024-10-21 knows max_completion_tokens but not the developer role.
    assert_eq!(
        String::from_utf8(seen.body.clone()).unwrap(),
        r#"{"model":"gpt-4o-prod","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello!"}],"max_completion_tokens":50}"#
    );
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["target"], "az/gpt-4o-prod");
    assert_eq!(
        (log["input_tokens"].as_u64(), log["output_tokens"].as_u64()),
        (Some(8), Some(271))
    );
}

#[tokio::test]
async fn embeddings_reach_the_embeddings_operation() {
    let up = FakeUpstream::start(|_| {
        Reply::ok(json!({"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
            "usage": {"prompt_tokens": 2, "total_tokens": 2}}))
    })
    .await;
    let gw = Gateway::start(&azure_config(&up.url(""))).await;
    let r = exchange(
        gw.addr,
        &post("/v1/embeddings", r#"{"model":"gpt-4o","input":"hi"}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["embedding"], json!([0.5, -0.25]));
    assert_azure_request(&up.received()[0], "embeddings");
}

#[tokio::test]
async fn azure_filter_chunks_are_dropped_from_streams() {
    // Azure's prompt-filter first chunk and an async-filter annotation, around
    // ordinary content chunks that carry `content_filter_results`.
    let events = [
        r#"data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#,
        r#"data: {"choices":[{"content_filter_results":{},"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"created":1,"id":"chatcmpl-A","model":"gpt-4o","object":"chat.completion.chunk"}"#,
        r#"data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Capital"},"finish_reason":null,"index":0}],"created":1,"id":"chatcmpl-A","model":"gpt-4o","object":"chat.completion.chunk"}"#,
        r#"data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"content_filter_offsets":{"check_offset":0,"start_offset":0,"end_offset":7},"index":0,"finish_reason":null}],"created":0,"id":"","model":"","object":""}"#,
        r#"data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0}],"created":1,"id":"chatcmpl-A","model":"gpt-4o","object":"chat.completion.chunk"}"#,
        "data: [DONE]",
    ];
    let script: Vec<String> = events.iter().map(|e| format!("{e}\n\n")).collect();
    let up = FakeUpstream::start(move |_| Reply::Stream {
        events: script.clone(),
        gate: None,
        end: StreamEnd::Clean,
    })
    .await;
    let gw = Gateway::start(&azure_config(&up.url(""))).await;
    let mut conn = Conn::open(gw.addr).await.unwrap();
    conn.send(&post(
        "/v1/chat/completions",
        r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
    ))
    .await
    .unwrap();
    assert_eq!(conn.read_head().await.unwrap().status, 200);
    let got = Events::new(conn).rest().await.unwrap();
    let expected: Vec<&str> = [1, 2, 4, 5]
        .iter()
        .map(|&i| events[i].strip_prefix("data: ").unwrap())
        .collect();
    assert_eq!(got, expected);
    let seen = &up.received()[0];
    assert_azure_request(seen, "chat/completions");
    assert!(
        seen.json().get("stream_options").is_none(),
        "2024-10-21 does not take stream_options"
    );
}

#[tokio::test]
async fn azure_errors_become_openai_errors() {
    let up = FakeUpstream::start(|seen: &Recorded| {
        let prompt = seen.json()["messages"][0]["content"].as_str().unwrap_or_default().to_string();
        let json = |status, body: serde_json::Value| Reply::Json {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
        };
        match prompt.as_str() {
            "filtered" => json(400, json!({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
                "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {"hate": {"filtered": true, "severity": "high"}}}}})),
            "throttled" => with_headers(
                json(429, json!({"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current AIServices S0 pricing tier. Please retry after 2 seconds."}})),
                &[("retry-after-ms", "1500"), ("retry-after", "2"), ("x-ratelimit-limit-tokens", "-1")],
            ),
            "missing" => json(404, json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}})),
            _ => json(401, json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}})),
        }
    })
    .await;
    let gw = Gateway::start(&azure_config(&up.url(""))).await;
    let ask = |prompt: &str| {
        format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{prompt}"}}]}}"#)
    };

    let r = chat(&gw, &ask("filtered")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "content_filter");
    let error = &r.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["param"], "prompt");
    assert_eq!(error["innererror"]["code"], "ResponsibleAIPolicyViolation");

    let r = chat(&gw, &ask("throttled")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    assert_eq!(r.json()["error"]["type"], "tokens");
    assert_eq!(r.header("retry-after-ms"), Some("1500"));
    assert_eq!(r.header("retry-after"), Some("2"));
    assert!(r.header("x-ratelimit-limit-tokens").is_none());

    let r = chat(&gw, &ask("missing")).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (502, "upstream_model_not_found")
    );
    let r = chat(&gw, &ask("denied")).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (502, "upstream_auth_failed")
    );
    assert!(gw.raw_log().iter().all(|l| !l.contains(AZURE_KEY)));
}

#[tokio::test]
async fn a_field_the_api_version_refuses_never_reaches_azure() {
    let up = FakeUpstream::start(|_| Reply::ok(azure_completion())).await;
    let gw = Gateway::start(&azure_config(&up.url(""))).await;
    let r = chat(
        &gw,
        r#"{"model":"gpt-4o","messages":[],"reasoning_effort":"low"}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unsupported_parameter");
    assert_eq!(r.json()["error"]["param"], "reasoning_effort");
    assert!(up.received().is_empty());
}

/// An Azure-shaped request with `headers`.
fn azure_request(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request("POST", path, &all, body.as_bytes())
}

#[tokio::test]
async fn azure_shaped_requests_are_served_by_any_provider() {
    let up = FakeUpstream::start(|_| {
        Reply::ok(json!({"id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "from openai"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "total_tokens": 4, "completion_tokens": 1}}))
    })
    .await;
    let gw = Gateway::start(&config(
        None,
        &format!("providers:\n  oa:\n    type: openai\n    base_url: {}\n    api_key: sk-up\n  mock:\n    type: mock\nmodels:\n  gpt-4o:\n    targets:\n      - {{ provider: oa, model: gpt-4o-2024-08-06 }}\n  demo:\n    targets:\n      - {{ provider: mock, model: mock-1 }}\n", up.url("/v1")),
    ))
    .await;
    let bearer = format!("Bearer {KEY}");

    // The AzureOpenAI SDK sends `api-key` and may leave `model` out of the body.
    let r = exchange(
        gw.addr,
        &azure_request(
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            &[("api-key", KEY)],
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["choices"][0]["message"]["content"], "from openai");
    let seen = &up.received()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.header("authorization"), Some("Bearer sk-up"));
    assert_eq!(
        String::from_utf8(seen.body.clone()).unwrap(),
        r#"{"model":"gpt-4o-2024-08-06","messages":[{"role":"user","content":"hi"}]}"#
    );

    // Bearer works too, and the URL's name wins over the body's `model`.
    let r = exchange(
        gw.addr,
        &azure_request(
            "/openai/deployments/demo/embeddings?api-version=2024-10-21",
            &[("authorization", &bearer)],
            r#"{"model":"ignored","input":"hello"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["object"], "list");
    assert_eq!(r.json()["model"], "mock-1");
}

#[tokio::test]
async fn azure_shaped_requests_are_checked_like_any_other() {
    let gw = Gateway::start(&azure_config("http://127.0.0.1:9")).await;
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let path = "/openai/deployments/demo/chat/completions";

    let r = exchange(gw.addr, &azure_request(path, &[("api-key", KEY)], body)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "missing_field");
    assert_eq!(r.json()["error"]["param"], "api-version");

    let with_version = format!("{path}?api-version=2024-10-21");
    let r = exchange(gw.addr, &azure_request(&with_version, &[], body)).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("api-key"));
    let r = exchange(
        gw.addr,
        &azure_request(&with_version, &[("api-key", "sk-nope")], body),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "invalid_api_key")
    );
    let r = exchange(
        gw.addr,
        &azure_request(
            "/openai/deployments/nope/chat/completions?api-version=2024-10-21",
            &[("api-key", KEY)],
            body,
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "model_not_found")
    );
    let r = exchange(
        gw.addr,
        &request("GET", &with_version, &[("api-key", KEY)], b""),
    )
    .await;
    assert_eq!(r.status, 405);

    let r = exchange(
        gw.addr,
        &azure_request(&with_version, &[("api-key", KEY)], body),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["object"], "chat.completion");
}

#[test]
fn azure_misconfiguration_is_named_by_the_config_check() {
    let bad_endpoint = azure_config("https://x.openai.azure.com/openai");
    let out = check_config(&bad_endpoint);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("providers.az.endpoint"), "{stderr}");
    assert!(stderr.contains("resource URL only"), "{stderr}");

    let model_not_deployment = azure_config("https://x.openai.azure.com")
        .replace("deployment: gpt-4o-prod", "model: gpt-4o");
    let out = check_config(&model_not_deployment);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("models.gpt-4o.targets[0].model"),
        "{stderr}"
    );
    assert!(stderr.contains("name the `deployment`"), "{stderr}");
}
