//! The error table and check order of DESIGN.md §2, over real sockets.

use crate::support::gateway::{config, Gateway, KEY};
use crate::support::http::{self, exchange, post, request, Conn};

const MODELS: &str = "providers:\n  demo:\n    type: mock\nmodels:\n  demo:\n    targets:\n      - { provider: demo, model: m }\n  secret-model:\n    targets:\n      - { provider: demo, model: m2 }\nmax_request_bytes: 1024\n";

async fn gateway() -> Gateway {
    Gateway::start(&config(Some("[\"demo\"]"), MODELS)).await
}

const CHAT: &str = r#"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn unknown_path_and_wrong_method() {
    let gw = gateway().await;
    let r = exchange(gw.addr, &post("/v1/nothing", CHAT)).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    let auth = format!("Bearer {KEY}");
    let r = exchange(
        gw.addr,
        &request(
            "GET",
            "/v1/chat/completions",
            &[("authorization", &auth)],
            b"",
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (405, "method_not_allowed")
    );
    assert_eq!(r.header("allow"), Some("POST"));
    // Path and method come before the key.
    let r = exchange(gw.addr, &request("GET", "/v1/chat/completions", &[], b"")).await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn missing_or_wrong_keys_get_401_and_are_never_echoed() {
    let gw = gateway().await;
    let r = exchange(
        gw.addr,
        &request("POST", "/v1/chat/completions", &[], CHAT.as_bytes()),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "invalid_api_key")
    );
    let wrong = "Bearer sk-wrong-guess-987";
    let r = exchange(
        gw.addr,
        &request(
            "POST",
            "/v1/chat/completions",
            &[("authorization", wrong)],
            CHAT.as_bytes(),
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "invalid_api_key")
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("sk-wrong-guess"));
    let lines = gw.log_lines(2).await;
    assert!(lines
        .iter()
        .all(|l| l["status"] == 401 && l["key"].is_null()));
    assert!(gw
        .raw_log()
        .iter()
        .all(|l| !l.contains("sk-wrong-guess") && !l.contains(KEY)));
    // A key before the body: an over-large body from an unknown key is still a 401.
    let big = "x".repeat(4096);
    let r = exchange(
        gw.addr,
        &request(
            "POST",
            "/v1/chat/completions",
            &[("authorization", wrong)],
            big.as_bytes(),
        ),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_declared_or_chunked() {
    let gw = gateway().await;
    let big = format!(
        r#"{{"model":"demo","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2048)
    );
    let r = exchange(gw.addr, &post("/v1/chat/completions", &big)).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "request_too_large")
    );
    // Chunked: no content-length, so the limit applies while reading.
    let auth = format!("Bearer {KEY}");
    let mut raw = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ntransfer-encoding: chunked\r\n\r\n").into_bytes();
    for piece in big.as_bytes().chunks(500) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(gw.addr, &raw).await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn malformed_json_and_missing_fields_get_400() {
    let gw = gateway().await;
    for (body, code, param) in [
        ("{not json", "invalid_json", None),
        (r#"{"messages":[]}"#, "missing_field", Some("model")),
        (r#"{"model":"demo"}"#, "missing_field", Some("messages")),
        (
            r#"{"model":["demo"],"messages":[]}"#,
            "invalid_type",
            Some("model"),
        ),
    ] {
        let r = exchange(gw.addr, &post("/v1/chat/completions", body)).await;
        assert_eq!((r.status, r.error_code().as_str()), (400, code), "{body}");
        assert_eq!(r.json()["error"]["param"].as_str(), param, "{body}");
    }
}

#[tokio::test]
async fn unknown_model_404_then_allow_list_403() {
    let gw = gateway().await;
    let r = exchange(
        gw.addr,
        &post("/v1/chat/completions", r#"{"model":"gpt-9","messages":[]}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "model_not_found")
    );
    let r = exchange(
        gw.addr,
        &post(
            "/v1/chat/completions",
            r#"{"model":"secret-model","messages":[]}"#,
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "model_not_allowed")
    );
    assert_eq!(r.json()["error"]["type"], "permission_error");
    // Local answers carry no upstream headers.
    assert!(r.header("x-switchyard-attempts").is_none());
    assert!(r.header("x-switchyard-overhead-ms").is_some());
    // The models listing shows only what the key may use; others look absent.
    let auth = format!("Bearer {KEY}");
    let r = http::get(gw.addr, "/v1/models", &[("authorization", &auth)])
        .await
        .unwrap();
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["demo"]);
    let r = http::get(gw.addr, "/v1/models/demo", &[("authorization", &auth)])
        .await
        .unwrap();
    assert_eq!((r.status, r.json()["id"].as_str()), (200, Some("demo")));
    let r = http::get(
        gw.addr,
        "/v1/models/secret-model",
        &[("authorization", &auth)],
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "model_not_found")
    );
    // Lines of concurrent workers may land in any order: find each by its model.
    let lines = gw.log_lines(5).await;
    let line_of = |model: &str| lines.iter().find(|l| l["model"] == model).cloned().unwrap();
    assert_eq!(line_of("gpt-9")["error"], "model_not_found");
    assert_eq!(line_of("secret-model")["error"], "model_not_allowed");
}

#[tokio::test]
async fn request_ids_are_echoed_when_valid_and_replaced_otherwise() {
    let gw = gateway().await;
    let auth = format!("Bearer {KEY}");
    let r = http::get(
        gw.addr,
        "/v1/models",
        &[("authorization", &auth), ("x-request-id", "trace-1:a_b.c")],
    )
    .await
    .unwrap();
    assert_eq!(r.header("x-request-id"), Some("trace-1:a_b.c"));
    let r = http::get(
        gw.addr,
        "/v1/models",
        &[("authorization", &auth), ("x-request-id", "bad id!")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").unwrap();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let gw = gateway().await;
    let mut conn = Conn::open(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        CHAT.len()
    );
    conn.send(head.as_bytes()).await.unwrap();
    let interim = conn.read_head().await.unwrap();
    assert_eq!(interim.status, 100);
    conn.send(CHAT.as_bytes()).await.unwrap();
    let r = conn.read_response().await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "hi");
}
