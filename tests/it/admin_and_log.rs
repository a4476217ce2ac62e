//! The admin listener and the metrics and access log fed by the request record.

use std::time::Duration;

use serde_json::json;

use crate::support::gateway::{config, Gateway, KEY};
use crate::support::http::{self, exchange, post};
use crate::support::upstream::{FakeUpstream, Reply};

const MOCK: &str = "providers:\n  demo:\n    type: mock\nmodels:\n  demo:\n    targets:\n      - { provider: demo, model: m }\n";

#[tokio::test]
async fn health_readiness_and_unknown_admin_paths() {
    let gw = Gateway::start(&config(None, MOCK)).await;
    let r = http::get(gw.admin, "/healthz", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let r = http::get(gw.admin, "/readyz", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.json()["config_generation"].as_i64()),
        (200, Some(1))
    );
    let r = http::get(gw.admin, "/nope", &[]).await.unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    // The admin endpoints are not on the API port.
    let r = http::get(gw.addr, "/metrics", &[]).await.unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn metrics_count_requests_with_bounded_labels() {
    let gw = Gateway::start(&config(None, MOCK)).await;
    let chat = r#"{"model":"demo","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        exchange(gw.addr, &post("/v1/chat/completions", chat))
            .await
            .status,
        200
    );
    let unknown = r#"{"model":"attacker-chosen-name","messages":[]}"#;
    assert_eq!(
        exchange(gw.addr, &post("/v1/chat/completions", unknown))
            .await
            .status,
        404
    );
    gw.log_lines(2).await;
    let text = String::from_utf8(http::get(gw.admin, "/metrics", &[]).await.unwrap().body).unwrap();
    assert!(
        text.contains(r#"switchyard_requests_total{model="demo",provider="demo",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"switchyard_requests_total{model="unknown",provider="none",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(!text.contains("attacker-chosen-name"));
    assert!(text
        .contains(r#"switchyard_request_duration_seconds_count{model="demo",provider="demo"} 1"#));
    assert!(text.contains(
        r#"switchyard_time_to_first_token_seconds_count{model="demo",provider="demo"} 1"#
    ));
    assert!(
        text.contains(r#"switchyard_upstream_attempts_total{outcome="success",provider="demo"} 1"#)
    );
    assert!(text.contains("switchyard_config_generation 1"));
    assert!(!text.contains(KEY));
}

#[tokio::test]
async fn every_request_writes_one_complete_log_line() {
    let gw = Gateway::start(&config(None, MOCK)).await;
    let r = exchange(
        gw.addr,
        &post(
            "/v1/chat/completions",
            r#"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#,
        ),
    )
    .await;
    let id = r.header("x-request-id").unwrap().to_string();
    exchange(gw.addr, &post("/v1/unknown", "{}")).await;
    let lines = gw.log_lines(2).await;
    assert_eq!(gw.raw_log().len(), 2);
    let keys = [
        "time",
        "request_id",
        "key",
        "model",
        "provider",
        "target",
        "attempts",
        "status",
        "stream",
        "duration_ms",
        "ttft_ms",
        "upstream_ms",
        "input_tokens",
        "output_tokens",
        "usage_estimated",
        "cost_usd",
        "error",
    ];
    for line in &lines {
        let obj = line.as_object().unwrap();
        assert_eq!(obj.len(), keys.len(), "{line}");
        for k in keys {
            assert!(obj.contains_key(k), "{k} missing in {line}");
        }
    }
    let ok = lines.iter().find(|l| l["status"] == 200).unwrap();
    assert_eq!(ok["request_id"], id.as_str());
    assert_eq!(
        (
            ok["key"].as_str(),
            ok["model"].as_str(),
            ok["status"].as_u64()
        ),
        (Some("app"), Some("demo"), Some(200))
    );
    assert_eq!(
        (ok["attempts"].as_u64(), ok["stream"].as_bool()),
        (Some(1), Some(false))
    );
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    let missing = lines.iter().find(|l| l["status"] == 404).unwrap();
    assert_eq!(
        (missing["status"].as_u64(), missing["error"].as_str()),
        (Some(404), Some("not_found"))
    );
    assert!(missing["key"].is_null() && missing["provider"].is_null());
}

/// The value of the sample `name` (labels included, as exposed) in `/metrics`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

#[tokio::test]
async fn overhead_leaves_out_the_time_spent_waiting_on_the_upstream() {
    const UPSTREAM_DELAY: Duration = Duration::from_millis(400);
    let up = FakeUpstream::start(|_| {
        // The test's runtime has nothing else to do meanwhile: the gateway is
        // another process.
        std::thread::sleep(UPSTREAM_DELAY);
        Reply::ok(json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}))
    })
    .await;
    let gw = Gateway::start(&config(
        None,
        &format!(
            "providers:\n  slow:\n    type: openai\n    base_url: {}\nmodels:\n  demo:\n    targets:\n      - {{ provider: slow, model: m }}\n",
            up.url("/v1")
        ),
    ))
    .await;
    let chat = r#"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#;
    let r = exchange(gw.addr, &post("/v1/chat/completions", chat)).await;
    assert_eq!(r.status, 200);
    let overhead_ms: f64 = r
        .header("x-switchyard-overhead-ms")
        .unwrap()
        .parse()
        .unwrap();
    let line = &gw.log_lines(1).await[0];
    let waited = UPSTREAM_DELAY.as_millis() as f64;
    assert!(line["duration_ms"].as_f64().unwrap() >= waited, "{line}");
    assert!(line["upstream_ms"].as_f64().unwrap() >= waited, "{line}");
    // A debug build on a busy CI machine still spends far less than this itself.
    assert!(overhead_ms < 100.0, "overhead header {overhead_ms} ms");

    let text = String::from_utf8(http::get(gw.admin, "/metrics", &[]).await.unwrap().body).unwrap();
    assert_eq!(sample(&text, "switchyard_overhead_seconds_count"), 1.0);
    assert!(
        sample(&text, "switchyard_overhead_seconds_sum") < 0.1,
        "{text}"
    );
    let duration = sample(
        &text,
        r#"switchyard_request_duration_seconds_sum{model="demo",provider="slow"}"#,
    );
    assert!(duration >= UPSTREAM_DELAY.as_secs_f64(), "{text}");
}
