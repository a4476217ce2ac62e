//! Per-key rate limits (DESIGN.md §2 "Rate-limit semantics") against the real
//! binary: exactness under concurrency, refill, token reservation and its
//! correction, release, the never-fits case, isolation between keys, headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, Barrier};

use crate::support::gateway::{Gateway, KEY};
use crate::support::http::{self, exchange, open_stream, post, request, Conn, Response};
use crate::support::upstream::{chunk_event, FakeUpstream, Reply, StreamEnd};

/// The second key, `other`, which has no limits.
const OTHER_KEY: &str = "sk-test-other-key-0987654321";
/// 8 prompt characters ("user" + "abcd"): 2 tokens.
const CHAT: &str =
    r#"{"model":"main","max_tokens":20,"messages":[{"role":"user","content":"abcd"}]}"#;
const STREAM: &str = r#"{"model":"main","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"abcd"}]}"#;

/// Key `app` with `limit` (a YAML flow map), key `other` without, and `body`.
fn limited(limit: &str, body: &str) -> String {
    format!(
        "keys:\n  - name: app\n    key: {KEY}\n    rate_limit: {limit}\n  - name: other\n    key: {OTHER_KEY}\n{body}"
    )
}

/// Model `main` on the built-in mock.
const ON_MOCK: &str = "providers:\n  demo: { type: mock }\nmodels:\n  main:\n    targets: [{ provider: demo, model: mock-1 }]\n";

/// Model `main` on one OpenAI upstream at `url`.
fn on_upstream(url: &str) -> String {
    format!(
        "providers:\n  up:\n    type: openai\n    base_url: {url}\n    api_key: sk-upstream-secret\nmodels:\n  main:\n    targets: [{{ provider: up, model: m }}]\n"
    )
}

/// A fake that answers every request with a clean stream of `events`, then
/// `[DONE]`.
async fn streaming(events: Vec<String>) -> FakeUpstream {
    FakeUpstream::start(move |_| Reply::Stream {
        events: events
            .iter()
            .cloned()
            .chain(["data: [DONE]\n\n".to_string()])
            .collect(),
        gate: None,
        end: StreamEnd::Clean,
    })
    .await
}

/// A gateway whose key `app` has `limit`, serving `main` from `up`.
async fn gateway_on(up: &FakeUpstream, limit: &str) -> Gateway {
    Gateway::start(&limited(limit, &on_upstream(&up.url("/v1")))).await
}

/// `(input_tokens, output_tokens)` of an access-log line.
fn logged_tokens(line: &Value) -> (Option<u64>, Option<u64>) {
    (
        line["input_tokens"].as_u64(),
        line["output_tokens"].as_u64(),
    )
}

/// A chat completion reporting `prompt` + `completion` tokens.
fn completion_body(prompt: u64, completion: u64) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
}

fn completion(prompt: u64, completion: u64) -> Reply {
    Reply::ok(completion_body(prompt, completion))
}

fn finish_event() -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    )
}

fn usage_event(prompt: u64, completion: u64) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
    )
}

async fn chat(gw: &Gateway) -> Response {
    exchange(gw.addr, &post("/v1/chat/completions", CHAT)).await
}

/// `GET /v1/models` with `key`: it counts against no budget, so its headers show
/// the budgets as they are.
async fn peek(gw: &Gateway, key: &str) -> Response {
    let auth = format!("Bearer {key}");
    http::get(gw.addr, "/v1/models", &[("authorization", &auth)])
        .await
        .unwrap()
}

fn number(r: &Response, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers))
        .parse()
        .unwrap()
}

/// Whether `remaining` is `expected` plus at most what refilled in `elapsed` at
/// `per_minute` (the bucket refills continuously, so a slow machine sees more).
fn about(remaining: u64, expected: u64, per_minute: u64, elapsed: Duration) -> bool {
    let refilled = (elapsed.as_secs_f64() * per_minute as f64 / 60.0).ceil() as u64;
    (expected..=expected + refilled).contains(&remaining)
}

/// OpenAI's duration format: `120ms`, `1s`, `1.5s`, `6m0s`.
fn is_openai_duration(text: &str) -> bool {
    let Some(rest) = text.strip_suffix("ms") else {
        let mut rest = text.strip_suffix('s').unwrap_or("x");
        for unit in ['h', 'm'] {
            if let Some((n, tail)) = rest.split_once(unit) {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return false;
                }
                rest = tail;
            }
        }
        return rest.parse::<f64>().is_ok() && !rest.starts_with('.');
    };
    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn a_burst_of_twice_the_limit_admits_exactly_the_limit() {
    const N: usize = 20;
    let up = FakeUpstream::start(|_| completion(1, 1)).await;
    let gw = gateway_on(&up, &format!("{{ requests_per_minute: {N} }}")).await;
    // 2N connections, opened first, then released at once: every request lands
    // within one refill interval (3 s at 20 a minute).
    let barrier = Arc::new(Barrier::new(2 * N));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2 * N {
        let mut conn = Conn::open(gw.addr).await.unwrap();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            conn.send(&post("/v1/chat/completions", CHAT))
                .await
                .unwrap();
            conn.read_response().await.unwrap()
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the burst took too long to prove anything"
    );
    let admitted = answers.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&Response> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!((admitted, refused.len()), (N, N));
    assert_eq!(up.received().len(), N);
    for r in refused {
        assert_eq!(r.error_code(), "rate_limit_exceeded");
        assert_eq!(r.json()["error"]["type"], "requests");
        assert_eq!(number(r, "x-ratelimit-remaining-requests"), 0);
        let wait_ms = number(r, "retry-after-ms");
        assert!((1..=3000).contains(&wait_ms), "{wait_ms}");
        assert_eq!(number(r, "retry-after"), wait_ms.div_ceil(1000));
        assert!(
            r.header("x-switchyard-attempts").is_none(),
            "refused before any try"
        );
    }
    gw.log_lines(2 * N).await;
    assert!(
        gw.metrics()
            .await
            .contains(&format!("switchyard_rate_limited_total{{key=\"app\"}} {N}")),
        "{}",
        gw.metrics().await
    );
}

#[tokio::test]
async fn the_bucket_refills_one_request_per_interval_and_the_hint_is_honest() {
    // 60 a minute: one request frees up every second.
    let gw = Gateway::start(&limited("{ requests_per_minute: 60 }", ON_MOCK)).await;
    let mut conn = Conn::open(gw.addr).await.unwrap();
    let mut remaining = Vec::new();
    for _ in 0..60 {
        conn.send(&post("/v1/chat/completions", CHAT))
            .await
            .unwrap();
        let r = conn.read_response().await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(number(&r, "x-ratelimit-limit-requests"), 60);
        let reset = r.header("x-ratelimit-reset-requests").unwrap();
        assert!(is_openai_duration(reset), "{reset}");
        remaining.push(number(&r, "x-ratelimit-remaining-requests"));
    }
    // Each answer counts itself; a refill within the loop may give one back.
    assert!(
        remaining[0] == 59 && remaining.windows(2).all(|w| w[1] <= w[0] + 1),
        "{remaining:?}"
    );
    // A refill during the loop may admit one or two more.
    let mut refused = chat(&gw).await;
    for _ in 0..3 {
        if refused.status == 429 {
            break;
        }
        refused = chat(&gw).await;
    }
    assert_eq!(refused.status, 429);
    let wait = Duration::from_millis(number(&refused, "retry-after-ms"));
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    assert!(is_openai_duration(
        refused.header("x-ratelimit-reset-requests").unwrap()
    ));
    tokio::time::sleep(wait).await;
    assert_eq!(
        chat(&gw).await.status,
        200,
        "admitted once the hint has passed"
    );
    assert_eq!(chat(&gw).await.status, 429, "and only that one");
}

#[tokio::test]
async fn tokens_are_reserved_then_corrected_to_the_reported_usage() {
    // 100 tokens a minute: one frees up every 600 ms.
    let up = FakeUpstream::start(|r| {
        if r.json()["stream"] == true {
            Reply::Stream {
                events: vec![
                    chunk_event("hello"),
                    finish_event(),
                    usage_event(3, 4),
                    "data: [DONE]\n\n".into(),
                ],
                gate: None,
                end: StreamEnd::Clean,
            }
        } else {
            completion(6, 4)
        }
    })
    .await;
    let gw = gateway_on(&up, "{ tokens_per_minute: 100, default_max_tokens: 50 }").await;
    let started = Instant::now();
    // A whole answer is corrected before its header: 100 − 10 used.
    let r = chat(&gw).await;
    assert_eq!(r.status, 200);
    assert_eq!(number(&r, "x-ratelimit-limit-tokens"), 100);
    assert!(about(
        number(&r, "x-ratelimit-remaining-tokens"),
        90,
        100,
        started.elapsed()
    ));
    assert!(
        r.header("x-ratelimit-limit-requests").is_none(),
        "the key has no request budget"
    );

    // A stream's header goes out with the estimate reserved (2 + 20), and the
    // end of the stream corrects it to the reported 7.
    let (head, mut events) = open_stream(gw.addr, STREAM).await;
    let reserved: u64 = head
        .header("x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        about(reserved, 90 - 22, 100, started.elapsed()),
        "{reserved}"
    );
    let events = events.rest().await.unwrap();
    // The client did not ask for usage: the gateway did, and dropped the chunk.
    assert!(
        events.iter().all(|e| !e.contains("\"usage\":{")),
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let sent = up.received()[1].json();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    let log = gw.log_lines(2).await;
    assert_eq!(logged_tokens(&log[1]), (Some(3), Some(4)));
    assert_eq!(log[1]["usage_estimated"], false);
    let p = peek(&gw, KEY).await;
    assert!(about(
        number(&p, "x-ratelimit-remaining-tokens"),
        90 - 7,
        100,
        started.elapsed()
    ));
}

#[tokio::test]
async fn a_failed_request_releases_its_tokens_but_counts_as_a_request() {
    let up = FakeUpstream::start(|_| Reply::error(500, "server_error", "boom")).await;
    let gw = gateway_on(
        &up,
        "{ requests_per_minute: 10, tokens_per_minute: 100, default_max_tokens: 50 }",
    )
    .await;
    let started = Instant::now();
    let r = chat(&gw).await;
    assert_eq!(r.status, 502);
    // The error answer itself still shows the reservation...
    assert!(about(
        number(&r, "x-ratelimit-remaining-tokens"),
        78,
        100,
        started.elapsed()
    ));
    gw.log_lines(1).await;
    // ...which is given back once the request is over.
    let p = peek(&gw, KEY).await;
    assert_eq!(number(&p, "x-ratelimit-remaining-tokens"), 100);
    assert!(about(
        number(&p, "x-ratelimit-remaining-requests"),
        9,
        10,
        started.elapsed()
    ));
}

#[tokio::test]
async fn a_request_larger_than_the_whole_budget_is_told_it_can_never_fit() {
    let up = FakeUpstream::start(|_| completion(1, 1)).await;
    let gw = gateway_on(
        &up,
        "{ requests_per_minute: 10, tokens_per_minute: 100, default_max_tokens: 50 }",
    )
    .await;
    // Two choices of up to 250 tokens each, and a prompt of 2: 502 > 100.
    let body =
        r#"{"model":"main","n":2,"max_tokens":250,"messages":[{"role":"user","content":"abcd"}]}"#;
    let r = exchange(gw.addr, &post("/v1/chat/completions", body)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    assert_eq!(r.json()["error"]["type"], "tokens");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("never fit")
            && message.contains("requested 502 (estimated: 2 for the prompt")
            && message.contains("plus 500 for the output"),
        "{message}"
    );
    assert!(r.header("retry-after").is_none() && r.header("retry-after-ms").is_none());
    assert_eq!(r.header("x-should-retry"), Some("false"));
    assert!(up.received().is_empty());
    // Refused requests take nothing from either budget.
    let p = peek(&gw, KEY).await;
    assert_eq!(number(&p, "x-ratelimit-remaining-tokens"), 100);
    assert_eq!(number(&p, "x-ratelimit-remaining-requests"), 10);
}

#[tokio::test]
async fn one_key_s_budget_never_touches_another_s() {
    let up = FakeUpstream::start(|_| Reply::Json {
        status: 200,
        headers: vec![
            ("content-type", "application/json".into()),
            ("x-ratelimit-remaining-requests", "4999".into()),
            ("x-ratelimit-limit-tokens", "800000".into()),
        ],
        body: completion_body(1, 1).to_string(),
    })
    .await;
    let yaml = format!(
        "keys:\n  - name: app\n    key: {KEY}\n    rate_limit: {{ requests_per_minute: 2 }}\n  - name: busy\n    key: sk-busy-key-5555555555\n    rate_limit: {{ requests_per_minute: 2 }}\n  - name: other\n    key: {OTHER_KEY}\n{}",
        on_upstream(&up.url("/v1"))
    );
    let gw = Gateway::start(&yaml).await;
    let as_key = |key: &str| {
        let auth = format!("Bearer {key}");
        request(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            CHAT.as_bytes(),
        )
    };
    for _ in 0..2 {
        assert_eq!(
            exchange(gw.addr, &as_key("sk-busy-key-5555555555"))
                .await
                .status,
            200
        );
    }
    assert_eq!(
        exchange(gw.addr, &as_key("sk-busy-key-5555555555"))
            .await
            .status,
        429
    );
    // `app` has its own two, untouched by `busy`.
    let r = chat(&gw).await;
    assert_eq!(r.status, 200);
    assert_eq!(number(&r, "x-ratelimit-remaining-requests"), 1);
    // The upstream's own rate-limit headers describe its account, not a key:
    // never passed on, whether the key has limits or not.
    assert!(r.header("x-ratelimit-limit-tokens").is_none());
    for _ in 0..5 {
        let r = exchange(gw.addr, &as_key(OTHER_KEY)).await;
        assert_eq!(r.status, 200);
        assert!(
            r.headers.iter().all(|(n, _)| !n.starts_with("x-ratelimit")),
            "{:?}",
            r.headers
        );
    }
    gw.log_lines(9).await;
    let text = gw.metrics().await;
    assert!(
        text.contains("switchyard_rate_limited_total{key=\"busy\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("switchyard_rate_limited_total{key=\"app\"} 0"),
        "{text}"
    );
    assert!(!text.contains("key=\"other\""), "{text}");
}

#[tokio::test]
async fn an_abandoned_stream_is_charged_for_what_was_generated() {
    let (permits, gate) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Mutex::new(gate));
    let generated = "x".repeat(400);
    let events = vec![
        chunk_event(&generated),
        chunk_event("never sent"),
        "data: [DONE]\n\n".into(),
    ];
    let up = FakeUpstream::start(move |_| Reply::Stream {
        events: events.clone(),
        gate: Some(gate.clone()),
        end: StreamEnd::Clean,
    })
    .await;
    let gw = gateway_on(&up, "{ tokens_per_minute: 600, default_max_tokens: 50 }").await;
    let started = Instant::now();
    let (_, mut events) = open_stream(gw.addr, STREAM).await;
    assert!(events.next().await.unwrap().unwrap().contains(&generated));
    drop(events);
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["status"], 499);
    // 400 characters streamed: 100 tokens; the prompt's 8 characters: 2.
    assert_eq!(logged_tokens(log), (Some(2), Some(100)));
    assert_eq!(log["usage_estimated"], true);
    let p = peek(&gw, KEY).await;
    assert!(about(
        number(&p, "x-ratelimit-remaining-tokens"),
        600 - 102,
        600,
        started.elapsed()
    ));
    drop(permits);
}

#[tokio::test]
async fn a_stream_without_usage_is_charged_from_its_text_and_marked_estimated() {
    // An upstream that ignores `stream_options` (an old OpenAI-compatible server).
    let up = streaming(vec![chunk_event(&"y".repeat(40)), finish_event()]).await;
    let gw = gateway_on(&up, "{ tokens_per_minute: 600, default_max_tokens: 50 }").await;
    let events = open_stream(gw.addr, STREAM).await.1.rest().await.unwrap();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let log = &gw.log_lines(1).await[0];
    assert_eq!(logged_tokens(log), (Some(2), Some(10)));
    assert_eq!(log["usage_estimated"], true);
    assert_eq!(log["status"], 200);
}

#[tokio::test]
async fn a_client_that_asked_for_usage_gets_the_usage_chunk() {
    let up = streaming(vec![
        chunk_event("hello"),
        finish_event(),
        usage_event(3, 4),
    ])
    .await;
    let gw = gateway_on(&up, "{ tokens_per_minute: 100, default_max_tokens: 50 }").await;
    let asked = r#"{"model":"main","stream":true,"stream_options":{"include_usage":true},"max_tokens":20,"messages":[{"role":"user","content":"abcd"}]}"#;
    let events = open_stream(gw.addr, asked).await.1.rest().await.unwrap();
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], 7);
    assert_eq!(
        up.received()[0].json()["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(logged_tokens(&gw.log_lines(1).await[0]), (Some(3), Some(4)));
}

#[tokio::test]
async fn an_azure_api_version_without_stream_usage_is_charged_from_the_text() {
    // Azure's GA api-version 2024-10-21 refuses `stream_options`: the gateway
    // leaves it out, so the stream's usage can only be estimated.
    let up = streaming(vec![chunk_event(&"z".repeat(80)), finish_event()]).await;
    let azure = format!(
        "providers:\n  az:\n    type: azure\n    endpoint: {}\n    api_key: azure-key-1234\n    api_version: \"2024-10-21\"\nmodels:\n  main:\n    targets: [{{ provider: az, deployment: dep }}]\n",
        up.url("")
    );
    let gw = Gateway::start(&limited(
        "{ tokens_per_minute: 1000, default_max_tokens: 50 }",
        &azure,
    ))
    .await;
    let (head, mut events) = open_stream(gw.addr, STREAM).await;
    assert!(head.header("x-ratelimit-remaining-tokens").is_some());
    assert_eq!(
        events.rest().await.unwrap().last().map(String::as_str),
        Some("[DONE]")
    );
    let sent = &up.received()[0];
    assert!(sent
        .path
        .starts_with("/openai/deployments/dep/chat/completions"));
    assert!(
        sent.json().get("stream_options").is_none(),
        "{}",
        sent.json()
    );
    let log = &gw.log_lines(1).await[0];
    // 8 prompt characters: 2 tokens; 80 streamed: 20.
    assert_eq!(logged_tokens(log), (Some(2), Some(20)));
    assert_eq!(log["usage_estimated"], true);
}
