//! Routing and failover (DESIGN.md §2 "Routing semantics"): every rule against
//! fake upstreams that refuse, fail, throttle, hang or stall.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use crate::support::free_port;
use crate::support::gateway::{config, Gateway};
use crate::support::http::{exchange, open_stream, post, Response};
use crate::support::upstream::{chunk_event, FakeUpstream, Recorded, Reply, StreamEnd};

const CHAT: &str = r#"{"model":"main","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str =
    r#"{"model":"main","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// An OpenAI provider named `name` at `url`, with `extra` lines under it.
fn openai(name: &str, url: &str, extra: &str) -> String {
    format!("  {name}:\n    type: openai\n    base_url: {url}\n    api_key: sk-{name}-key\n{extra}")
}

/// The gateway config: `providers` (from [`openai`]) and the `models` section.
fn gateway_config(providers: &[String], models: &str) -> String {
    config(
        None,
        &format!("providers:\n{}models:\n{models}", providers.concat()),
    )
}

/// `main` on `primary` (priority 1) then `secondary` (priority 2), with `extra`
/// model lines (timeouts, retry).
fn two_tiers(extra: &str) -> String {
    format!("  main:\n    targets:\n      - {{ provider: primary, model: m }}\n      - {{ provider: secondary, model: m, priority: 2 }}\n{extra}")
}

/// A gateway with [`two_tiers`] on providers at `primary` and `secondary`;
/// `primary_extra` goes under the primary provider, `model_extra` under `main`.
async fn two_tier_gateway(
    primary: &str,
    secondary: &str,
    primary_extra: &str,
    model_extra: &str,
) -> Gateway {
    Gateway::start(&gateway_config(
        &[
            openai("primary", primary, primary_extra),
            openai("secondary", secondary, ""),
        ],
        &two_tiers(model_extra),
    ))
    .await
}

fn completion(text: &str) -> Reply {
    Reply::ok(
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
    )
}

fn role_event() -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
    )
}

/// A complete stream answering `text`.
fn stream_of(text: &str) -> Reply {
    Reply::Stream {
        events: vec![role_event(), chunk_event(text), "data: [DONE]\n\n".into()],
        gate: None,
        end: StreamEnd::Clean,
    }
}

async fn chat(gw: &Gateway) -> Response {
    exchange(gw.addr, &post("/v1/chat/completions", CHAT)).await
}

/// The content of a whole chat answer.
fn answer(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Chat requests (not probes) the fake received.
fn chats(up: &FakeUpstream) -> Vec<Recorded> {
    up.received()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect()
}

/// `http://127.0.0.1:PORT/v1` where nothing listens: connections are refused.
fn refused_url() -> String {
    format!("http://127.0.0.1:{}/v1", free_port())
}

#[tokio::test]
async fn a_refused_connection_fails_over_to_the_next_priority() {
    let secondary = FakeUpstream::start(|_| completion("from secondary")).await;
    let gw = two_tier_gateway(&refused_url(), &secondary.url("/v1"), "", "").await;
    let r = chat(&gw).await;
    assert_eq!(answer(&r), "from secondary");
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(r.header("x-switchyard-provider"), Some("secondary"));
    assert_eq!(
        chats(&secondary)[0].header("authorization"),
        Some("Bearer sk-secondary-key")
    );
    let line = &gw.log_lines(1).await[0];
    assert_eq!(line["attempts"], 2);
    assert_eq!(line["target"], "secondary/m");
    assert_eq!(line["provider"], "secondary");
    let text = gw.metrics().await;
    for series in [
        r#"switchyard_upstream_attempts_total{outcome="connect_error",provider="primary"} 1"#,
        r#"switchyard_upstream_attempts_total{outcome="success",provider="secondary"} 1"#,
        r#"switchyard_failovers_total{model="main"} 1"#,
        r#"switchyard_upstream_healthy{provider="primary",target="primary/m"} 1"#,
        r#"switchyard_circuit_open{provider="primary",target="primary/m"} 0"#,
    ] {
        assert!(text.contains(series), "{series} missing in\n{text}");
    }
}

#[tokio::test]
async fn a_500_fails_over_with_the_one_mebibyte_body_intact() {
    let primary = FakeUpstream::start(|_| Reply::error(500, "server_error", "boom")).await;
    let secondary = FakeUpstream::start(|_| completion("ok")).await;
    let gw = two_tier_gateway(&primary.url("/v1"), &secondary.url("/v1"), "", "").await;
    let text: String = (0..1024 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let body =
        json!({"model": "main", "messages": [{"role": "user", "content": text}]}).to_string();
    let r = exchange(gw.addr, &post("/v1/chat/completions", &body)).await;
    assert_eq!(answer(&r), "ok");
    let (first, second) = (&chats(&primary)[0], &chats(&secondary)[0]);
    assert_eq!(first.body, second.body, "each try sends the same bytes");
    assert_eq!(second.json()["messages"][0]["content"], text.as_str());
    assert_eq!(second.json()["model"], "m");
}

#[tokio::test]
async fn a_429_cools_the_target_down_for_its_retry_after() {
    let throttled = Arc::new(AtomicUsize::new(1));
    let left = throttled.clone();
    let primary = FakeUpstream::start(move |_| {
        if left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            Reply::Json {
                status: 429,
                headers: vec![
                    ("content-type", "application/json".into()),
                    ("retry-after-ms", "700".into()),
                ],
                body: json!({"error": {"message": "slow down", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}).to_string(),
            }
        } else {
            completion("from primary")
        }
    })
    .await;
    let secondary = FakeUpstream::start(|_| completion("from secondary")).await;
    let gw = two_tier_gateway(&primary.url("/v1"), &secondary.url("/v1"), "", "").await;
    let started = Instant::now();
    let r = chat(&gw).await;
    assert_eq!(answer(&r), "from secondary");
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    // Cooling down: the primary is skipped, not tried.
    let r = chat(&gw).await;
    assert_eq!(answer(&r), "from secondary");
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(chats(&primary).len(), 1);
    assert!(started.elapsed() < Duration::from_millis(700));
    tokio::time::sleep(Duration::from_millis(800).saturating_sub(started.elapsed())).await;
    let r = chat(&gw).await;
    assert_eq!(answer(&r), "from primary");
    gw.log_lines(3).await;
    let text = gw.metrics().await;
    assert!(text.contains(r#"switchyard_circuit_open{provider="primary",target="primary/m"} 0"#));
    assert!(text.contains(
        r#"switchyard_upstream_attempts_total{outcome="http_429",provider="primary"} 1"#
    ));
}

#[tokio::test]
async fn a_hang_before_headers_times_out_after_first_byte_and_fails_over() {
    let primary = FakeUpstream::start(|_| Reply::Silence).await;
    let secondary = FakeUpstream::start(|_| completion("from secondary")).await;
    let gw = two_tier_gateway(
        &primary.url("/v1"),
        &secondary.url("/v1"),
        "",
        "    timeouts: { first_byte: 300ms }\n",
    )
    .await;
    let started = Instant::now();
    let r = chat(&gw).await;
    let took = started.elapsed();
    assert_eq!(answer(&r), "from secondary");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    gw.log_lines(1).await;
    let text = gw.metrics().await;
    assert!(text
        .contains(r#"switchyard_upstream_attempts_total{outcome="timeout",provider="primary"} 1"#));
}

#[tokio::test]
async fn a_stream_failing_before_content_fails_over_cleanly() {
    let primary = FakeUpstream::start(|_| Reply::Stream {
        events: vec![role_event()],
        gate: None,
        end: StreamEnd::Cut,
    })
    .await;
    let secondary = FakeUpstream::start(|_| stream_of("whole answer")).await;
    let gw = two_tier_gateway(&primary.url("/v1"), &secondary.url("/v1"), "", "").await;
    let events = stream(&gw).await;
    assert_eq!(events.len(), 3, "{events:?}");
    let role: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
    let content: serde_json::Value = serde_json::from_str(&events[1]).unwrap();
    assert_eq!(content["choices"][0]["delta"]["content"], "whole answer");
    assert_eq!(events[2], "[DONE]");
}

#[tokio::test]
async fn an_error_event_before_content_fails_over() {
    let error = json!({"error": {"message": "The server had an error", "type": "server_error", "param": null, "code": null}});
    let primary = FakeUpstream::start(move |_| Reply::Stream {
        events: vec![role_event(), format!("data: {error}\n\n")],
        gate: None,
        end: StreamEnd::Clean,
    })
    .await;
    let secondary = FakeUpstream::start(|_| stream_of("from secondary")).await;
    let gw = two_tier_gateway(&primary.url("/v1"), &secondary.url("/v1"), "", "").await;
    let events = stream(&gw).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events[1].contains("from secondary"), "{events:?}");
    assert_eq!(events[2], "[DONE]");
    // Metrics are counted when the request is logged, just after its answer.
    gw.log_lines(1).await;
    let text = gw.metrics().await;
    assert!(text.contains(
        r#"switchyard_upstream_attempts_total{outcome="http_5xx",provider="primary"} 1"#
    ));
}

#[tokio::test]
async fn an_empty_stream_fails_over() {
    let primary = FakeUpstream::start(|_| Reply::Stream {
        events: vec![],
        gate: None,
        end: StreamEnd::Clean,
    })
    .await;
    let secondary = FakeUpstream::start(|_| stream_of("from secondary")).await;
    let gw = two_tier_gateway(&primary.url("/v1"), &secondary.url("/v1"), "", "").await;
    let events = stream(&gw).await;
    assert!(events[1].contains("from secondary"), "{events:?}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(chats(&primary).len(), 1);
    assert_eq!(gw.log_lines(1).await[0]["attempts"], 2);
}

/// Streams `main` and returns every event's data.
async fn stream(gw: &Gateway) -> Vec<String> {
    open_stream(gw.addr, STREAM).await.1.rest().await.unwrap()
}

#[tokio::test]
async fn a_stall_after_content_ends_with_an_error_event_and_counts_against_the_target() {
    let (_permits, gate) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(tokio::sync::Mutex::new(gate));
    let primary = FakeUpstream::start(move |_| Reply::Stream {
        events: vec![
            format!("{}{}", role_event(), chunk_event("partial")),
            chunk_event("never sent"),
        ],
        gate: Some(gate.clone()),
        end: StreamEnd::Clean,
    })
    .await;
    let secondary = FakeUpstream::start(|_| completion("from secondary")).await;
    let gw = two_tier_gateway(
        &primary.url("/v1"),
        &secondary.url("/v1"),
        "    circuit_breaker: { failure_threshold: 1, recovery_timeout: 30s }\n",
        "    timeouts: { idle: 300ms }\n",
    )
    .await;
    let started = Instant::now();
    let events = stream(&gw).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        events.len(),
        3,
        "role, content, error and the end: {events:?}"
    );
    assert!(events[1].contains("partial"));
    let error: serde_json::Value = serde_json::from_str(&events[2]).unwrap();
    assert_eq!(error["error"]["code"], "upstream_timeout");
    assert_eq!(error["error"]["type"], "server_error");
    // The stall opened the primary's circuit: the next request goes elsewhere.
    let r = chat(&gw).await;
    assert_eq!(answer(&r), "from secondary");
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(chats(&primary).len(), 1);
    gw.log_lines(2).await;
    let text = gw.metrics().await;
    assert!(text.contains(r#"switchyard_circuit_open{provider="primary",target="primary/m"} 1"#));
    assert!(text
        .contains(r#"switchyard_upstream_attempts_total{outcome="timeout",provider="primary"} 1"#));
}

#[tokio::test]
async fn weights_split_traffic_three_to_one() {
    let heavy = FakeUpstream::start(|_| completion("heavy")).await;
    let light = FakeUpstream::start(|_| completion("light")).await;
    let gw = Gateway::start(&gateway_config(
        &[
            openai("heavy", &heavy.url("/v1"), ""),
            openai("light", &light.url("/v1"), ""),
        ],
        "  main:\n    targets:\n      - { provider: heavy, model: m, weight: 3 }\n      - { provider: light, model: m, weight: 1 }\n",
    ))
    .await;
    let addr = gw.addr;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let r = exchange(addr, &post("/v1/chat/completions", CHAT)).await;
                assert_eq!(r.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (h, l) = (chats(&heavy).len(), chats(&light).len());
    assert_eq!(h + l, 400);
    // 3:1 of 400 is 300; the standard deviation is 8.7, so ±45 is over five.
    assert!((255..=345).contains(&h), "heavy {h}, light {l}");
}

/// How the primary of the circuit test behaves.
const BROKEN: usize = 0;
const HANGING: usize = 1;
const HEALTHY: usize = 2;

#[tokio::test]
async fn the_circuit_opens_lets_one_trial_through_under_load_and_closes() {
    let mode = Arc::new(AtomicUsize::new(BROKEN));
    let current = mode.clone();
    let primary = FakeUpstream::start(move |_| match current.load(Ordering::SeqCst) {
        BROKEN => Reply::error(500, "server_error", "down"),
        HANGING => Reply::Silence,
        _ => completion("from primary"),
    })
    .await;
    let secondary = FakeUpstream::start(|_| completion("from secondary")).await;
    let gw = two_tier_gateway(
        &primary.url("/v1"),
        &secondary.url("/v1"),
        "    circuit_breaker: { failure_threshold: 2, recovery_timeout: 500ms }\n",
        "    timeouts: { first_byte: 1s }\n",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(chat(&gw).await.header("x-switchyard-attempts"), Some("2"));
    }
    // Open: the primary gets nothing.
    for _ in 0..5 {
        let r = chat(&gw).await;
        assert_eq!(answer(&r), "from secondary");
        assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    }
    assert_eq!(chats(&primary).len(), 2);
    assert!(gw
        .metrics()
        .await
        .contains(r#"switchyard_circuit_open{provider="primary",target="primary/m"} 1"#));

    // Half-open under load: exactly one of twenty concurrent requests is the
    // trial; it hangs, times out and fails over like the rest.
    mode.store(HANGING, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let addr = gw.addr;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move { exchange(addr, &post("/v1/chat/completions", CHAT)).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(answer(&t.await.unwrap()), "from secondary");
    }
    assert_eq!(chats(&primary).len(), 3, "one trial only");

    // Recovered: the next trial succeeds and closes the circuit.
    mode.store(HEALTHY, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..3 {
        let r = chat(&gw).await;
        assert_eq!(answer(&r), "from primary");
        assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    }
    assert!(gw
        .metrics()
        .await
        .contains(r#"switchyard_circuit_open{provider="primary",target="primary/m"} 0"#));
}

#[tokio::test]
async fn fallback_models_are_tried_after_every_target_failed() {
    let primary = FakeUpstream::start(|_| Reply::error(503, "server_error", "down")).await;
    let spare = FakeUpstream::start(|_| completion("from spare")).await;
    let gw = Gateway::start(&gateway_config(
        &[
            openai("primary", &primary.url("/v1"), ""),
            openai("spare", &spare.url("/v1"), ""),
        ],
        "  main:\n    targets:\n      - { provider: primary, model: m }\n    fallbacks: [small]\n  small:\n    targets:\n      - { provider: spare, model: small-model }\n",
    ))
    .await;
    let r = chat(&gw).await;
    assert_eq!(answer(&r), "from spare");
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(chats(&spare)[0].json()["model"], "small-model");
    let line = &gw.log_lines(1).await[0];
    assert_eq!(line["model"], "main");
    assert_eq!(line["target"], "spare/small-model");
}

#[tokio::test]
async fn the_last_resort_tries_an_open_circuit_when_nothing_else_is_left() {
    let failures = Arc::new(AtomicUsize::new(1));
    let left = failures.clone();
    let only = FakeUpstream::start(move |_| {
        if left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            Reply::error(500, "server_error", "blip")
        } else {
            completion("back")
        }
    })
    .await;
    let gw = Gateway::start(&gateway_config(
        &[openai(
            "only",
            &only.url("/v1"),
            "    circuit_breaker: { failure_threshold: 1, recovery_timeout: 60s }\n",
        )],
        "  main:\n    targets:\n      - { provider: only, model: m }\n",
    ))
    .await;
    let r = chat(&gw).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_error");
    assert!(gw
        .metrics()
        .await
        .contains(r#"switchyard_circuit_open{provider="only",target="only/m"} 1"#));
    // Open for a minute, but it is the only candidate: one try anyway, whose
    // success closes the circuit.
    let r = chat(&gw).await;
    assert_eq!(answer(&r), "back");
    assert_eq!(chats(&only).len(), 2);
    // The circuit closes as the try is reported, just after the answer went out.
    gw.wait_for_metric(r#"switchyard_circuit_open{provider="only",target="only/m"} 0"#)
        .await;
}

/// A 429 in OpenAI's envelope with `retry-after-ms`.
fn throttled(ms: &str) -> Reply {
    Reply::Json {
        status: 429,
        headers: vec![
            ("content-type", "application/json".into()),
            ("retry-after-ms", ms.into()),
        ],
        body: json!({"error": {"message": "slow down", "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}).to_string(),
    }
}

#[tokio::test]
async fn when_every_target_throttles_the_client_gets_the_earliest_retry_after() {
    let primary = FakeUpstream::start(|_| throttled("3000")).await;
    let secondary = FakeUpstream::start(|_| throttled("1500")).await;
    let gw = two_tier_gateway(&primary.url("/v1"), &secondary.url("/v1"), "", "").await;
    let r = chat(&gw).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    assert_eq!(r.header("retry-after-ms"), Some("1500"));
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
}

#[tokio::test]
async fn retry_on_and_attempts_bound_the_walk() {
    let primary = FakeUpstream::start(|_| Reply::error(500, "server_error", "down")).await;
    let secondary = FakeUpstream::start(|_| completion("from secondary")).await;
    let providers = [
        openai("primary", &primary.url("/v1"), ""),
        openai("secondary", &secondary.url("/v1"), ""),
    ];
    let gw = Gateway::start(&gateway_config(
        &providers,
        &two_tiers("    retry: { on: [connect, timeout] }\n"),
    ))
    .await;
    let r = chat(&gw).await;
    assert_eq!(r.status, 502, "a 5xx is not retried unless `on` says so");
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    drop(gw);
    let gw = Gateway::start(&gateway_config(
        &providers,
        &two_tiers("    retry: { attempts: 1 }\n"),
    ))
    .await;
    assert_eq!(chat(&gw).await.status, 502);
    assert!(chats(&secondary).is_empty());
}

#[tokio::test]
async fn the_total_timeout_bounds_every_try_together() {
    let primary = FakeUpstream::start(|_| Reply::Silence).await;
    let secondary = FakeUpstream::start(|_| Reply::Silence).await;
    let gw = two_tier_gateway(
        &primary.url("/v1"),
        &secondary.url("/v1"),
        "",
        "    timeouts: { first_byte: 1s, total: 1500ms }\n",
    )
    .await;
    let started = Instant::now();
    let r = chat(&gw).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.error_code(), "upstream_timeout");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("total"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(2500),
        "{took:?}"
    );
}
