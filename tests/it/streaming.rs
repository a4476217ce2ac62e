//! Streams: event by event, in lockstep with the client; broken streams end with an
//! error event, never `[DONE]`; a client that leaves stops the upstream.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::support::gateway::{config, Gateway};
use crate::support::http::{self, post, Conn, Events};
use crate::support::upstream::{chunk_event, FakeUpstream, Reply, StreamEnd};

fn stream_config(base_url: &str) -> String {
    config(
        None,
        &format!(
            "providers:\n  up:\n    type: openai\n    base_url: {base_url}\n    api_key: sk-p\nmodels:\n  gpt-4o:\n    targets:\n      - {{ provider: up, model: up-model }}\nrouting:\n  timeouts: {{ idle: 2s }}\n"
        ),
    )
}

const STREAM: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

async fn open_stream(gw: &Gateway) -> Events {
    let (head, events) = http::open_stream(gw.addr, STREAM).await;
    assert!(head
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(head.header("set-cookie").is_none());
    assert_eq!(head.header("x-switchyard-provider"), Some("up"));
    events
}

#[tokio::test]
async fn events_are_forwarded_one_by_one_in_lockstep() {
    let (permits, gate) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Mutex::new(gate));
    let role = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n".to_string();
    let mut events = vec![role];
    for word in ["one", "two", "three", "four"] {
        events.push(chunk_event(word));
    }
    events.push("data: [DONE]\n\n".to_string());
    let script = events.clone();
    let up = FakeUpstream::start(move |_| Reply::Stream {
        events: script.clone(),
        gate: Some(gate.clone()),
        end: StreamEnd::Clean,
    })
    .await;
    let gw = Gateway::start(&stream_config(&up.url("/v1"))).await;
    // The role-only first event is held back until content arrives, so release
    // the first content event before expecting anything.
    permits.send(()).unwrap();
    let mut stream = open_stream(&gw).await;
    let mut got = Vec::new();
    for (i, expected) in events.iter().enumerate() {
        let event = stream.next().await.unwrap().expect("an event");
        assert_eq!(format!("data: {event}\n\n"), *expected, "event {i}");
        got.push(event);
        // The upstream sends event k+1 only now that the client holds event k.
        if i >= 1 {
            permits.send(()).unwrap();
        }
    }
    assert_eq!(stream.next().await.unwrap(), None);
    assert_eq!(got.last().map(String::as_str), Some("[DONE]"));
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["stream"], true);
    assert!(log["ttft_ms"].as_f64().is_some());
}

#[tokio::test]
async fn a_stream_cut_after_content_ends_with_an_error_event() {
    let up = FakeUpstream::start(|_| Reply::Stream {
        events: vec![chunk_event("partial")],
        gate: None,
        end: StreamEnd::Cut,
    })
    .await;
    let gw = Gateway::start(&stream_config(&up.url("/v1"))).await;
    let mut stream = open_stream(&gw).await;
    let events = stream.rest().await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains("partial"));
    let error: serde_json::Value = serde_json::from_str(&events[1]).unwrap();
    assert_eq!(error["error"]["code"], "upstream_error");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["error"], "upstream_error");
}

#[tokio::test]
async fn a_stream_cut_before_content_is_a_clean_502() {
    let up = FakeUpstream::start(|_| Reply::Stream {
        events: vec![],
        gate: None,
        end: StreamEnd::Cut,
    })
    .await;
    let gw = Gateway::start(&stream_config(&up.url("/v1"))).await;
    let mut conn = Conn::open(gw.addr).await.unwrap();
    conn.send(&post("/v1/chat/completions", STREAM))
        .await
        .unwrap();
    let r = conn.read_response().await.unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_error"));
}

#[tokio::test]
async fn a_stalled_stream_hits_the_idle_timeout() {
    let (_permits, gate) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(tokio::sync::Mutex::new(gate));
    let up = FakeUpstream::start(move |_| Reply::Stream {
        events: vec![chunk_event("first"), chunk_event("never")],
        gate: Some(gate.clone()),
        end: StreamEnd::Clean,
    })
    .await;
    let gw = Gateway::start(&stream_config(&up.url("/v1"))).await;
    let mut stream = open_stream(&gw).await;
    let events = stream.rest().await.unwrap();
    assert!(events[0].contains("first"));
    let error: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_stops_the_upstream() {
    let (_permits, gate) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(tokio::sync::Mutex::new(gate));
    let up = FakeUpstream::start(move |_| Reply::Stream {
        events: vec![chunk_event("first"), chunk_event("never sent")],
        gate: Some(gate.clone()),
        end: StreamEnd::Clean,
    })
    .await;
    let gw = Gateway::start(&stream_config(&up.url("/v1"))).await;
    let closed = up.closed.clone();
    let notified = closed.notified();
    let mut stream = open_stream(&gw).await;
    assert!(stream.next().await.unwrap().unwrap().contains("first"));
    drop(stream);
    // The gateway notices the client left and closes its upstream connection,
    // long before the idle timeout (2 s) would.
    tokio::time::timeout(Duration::from_millis(1500), notified)
        .await
        .expect("the upstream connection was not closed");
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["status"], 499);
}

#[tokio::test]
async fn a_client_that_hangs_up_right_after_done_got_a_whole_answer() {
    // SDKs close the connection as soon as they read `[DONE]`; the upstream may
    // end its body later. The request succeeded, with its usage.
    let usage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":15,\"completion_tokens\":78,\"total_tokens\":93}}\n\n";
    let up = FakeUpstream::start(move |_| Reply::Stream {
        events: vec![
            chunk_event("whole"),
            usage.to_string(),
            "data: [DONE]\n\n".to_string(),
        ],
        gate: None,
        end: StreamEnd::Late(Duration::from_millis(400)),
    })
    .await;
    let gw = Gateway::start(&stream_config(&up.url("/v1"))).await;
    let mut stream = open_stream(&gw).await;
    let mut last = String::new();
    while last != "[DONE]" {
        last = stream
            .next()
            .await
            .unwrap()
            .expect("the stream ended before [DONE]");
    }
    drop(stream);
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["status"], 200, "{log}");
    assert_eq!(
        (log["input_tokens"].as_u64(), log["output_tokens"].as_u64()),
        (Some(15), Some(78))
    );
    assert!(log["error"].is_null(), "{log}");
}

#[tokio::test]
async fn finished_streams_leave_their_upstream_connection_in_the_pool() {
    let up = FakeUpstream::start(|_| Reply::Stream {
        events: vec![chunk_event("one"), "data: [DONE]\n\n".to_string()],
        gate: None,
        end: StreamEnd::Clean,
    })
    .await;
    let gw = Gateway::start(&stream_config(&up.url("/v1"))).await;
    for _ in 0..5 {
        let events = open_stream(&gw).await.rest().await.unwrap();
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }
    let connections = up.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        connections <= 2,
        "{connections} connections for 5 sequential streams"
    );
}
