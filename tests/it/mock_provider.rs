//! The built-in `mock` provider through the whole gateway, as `make run` serves it.

use crate::support::gateway::{config, Gateway};
use crate::support::http::{exchange, post, Conn, Events};

const MOCK: &str = "providers:\n  demo:\n    type: mock\nmodels:\n  demo-chat:\n    targets:\n      - { provider: demo, model: mock-chat-1, price: { input_per_mtok: 1000000, output_per_mtok: 2000000 } }\n  demo-embed:\n    targets:\n      - { provider: demo, model: mock-embed-1 }\n";

#[tokio::test]
async fn the_quick_start_config_answers_a_chat_completion() {
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/switchyard.yaml"))
            .unwrap();
    let yaml: String = yaml
        .lines()
        .filter(|l| !l.starts_with("listen:") && !l.starts_with("admin_listen:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let gw = Gateway::start(&yaml).await;
    let raw = crate::support::http::request(
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-switchyard-demo")],
        br#"{"model":"demo-chat","messages":[{"role":"user","content":"Hello!"}]}"#,
    );
    let r = exchange(gw.addr, &raw).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello!");
}

#[tokio::test]
async fn chat_echoes_with_usage_and_cost() {
    let gw = Gateway::start(&config(None, MOCK)).await;
    let r = exchange(
        gw.addr,
        &post(
            "/v1/chat/completions",
            r#"{"model":"demo-chat","messages":[{"role":"user","content":"eight ch"}]}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "eight ch");
    assert_eq!(v["model"], "mock-chat-1");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["completion_tokens"], 2);
    assert_eq!(r.header("x-switchyard-provider"), Some("demo"));
    let log = &gw.log_lines(1).await[0];
    // 2 input tokens at $1/token + 2 output tokens at $2/token.
    assert_eq!(log["cost_usd"], 6.0);
}

#[tokio::test]
async fn streams_arrive_in_several_chunks() {
    let gw = Gateway::start(&config(None, MOCK)).await;
    let mut conn = Conn::open(gw.addr).await.unwrap();
    let text = "a longer message that the mock splits into several pieces";
    conn.send(&post(
        "/v1/chat/completions",
        &format!(r#"{{"model":"demo-chat","stream":true,"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"{text}"}}]}}"#),
    ))
    .await
    .unwrap();
    assert_eq!(conn.read_head().await.unwrap().status, 200);
    let events = Events::new(conn).rest().await.unwrap();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, text);
    assert!(
        chunks
            .iter()
            .filter(|c| c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty()))
            .count()
            > 2
    );
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 15);
}

#[tokio::test]
async fn embeddings_answer_locally() {
    let gw = Gateway::start(&config(None, MOCK)).await;
    let r = exchange(
        gw.addr,
        &post(
            "/v1/embeddings",
            r#"{"model":"demo-embed","input":["x","y"],"dimensions":4}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 4);
    let r = exchange(
        gw.addr,
        &post(
            "/v1/embeddings",
            r#"{"model":"demo-embed","input":"x","encoding_format":"hex"}"#,
        ),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_value"));
}
