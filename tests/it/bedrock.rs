//! AWS Bedrock through the real binary: a fake Bedrock on 127.0.0.1 answers
//! Converse with recorded bodies and ConverseStream with real captured event
//! stream bytes, cut into odd pieces on the wire, and Bedrock's error shapes.
//! (The signature itself is checked by an independent implementation in the
//! end-to-end tests and against AWS's suites in the unit tests.)

use std::path::Path;

use serde_json::json;

use crate::support::gateway::{check_config, config, Gateway};
use crate::support::http::{exchange, post, Conn, Events, Response};
use crate::support::upstream::{FakeUpstream, Recorded, Reply, StreamEnd};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLEsessiontoken0123456789";
const MODEL_ID: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const WIRE_PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0";

fn bedrock_config(endpoint: &str) -> String {
    config(
        None,
        &format!(
            "providers:\n  br:\n    type: bedrock\n    region: us-east-1\n    endpoint: {endpoint}\n    access_key_id: AKIDEXAMPLE\n    secret_access_key: {SECRET}\n    session_token: {SESSION_TOKEN}\nmodels:\n  claude:\n    targets:\n      - {{ provider: br, model: \"{MODEL_ID}\" }}\n"
        ),
    )
}

fn capture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/eventstream/bedrock-captures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `bytes` cut into pieces of `size`: frames arrive split at arbitrary points.
fn pieces(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
    bytes.chunks(size).map(<[u8]>::to_vec).collect()
}

fn event_stream(bytes: &[u8], end: StreamEnd) -> Reply {
    Reply::Chunked {
        content_type: "application/vnd.amazon.eventstream",
        pieces: pieces(bytes, 7),
        end,
    }
}

/// An error answer as Bedrock sends it: status, `x-amzn-ErrorType`, `{"message"}`.
fn bedrock_error(status: u16, name: &str, message: &str) -> Reply {
    Reply::Json {
        status,
        headers: vec![
            ("content-type", "application/json".into()),
            (
                "x-amzn-ErrorType",
                format!("{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            ),
        ],
        body: json!({ "message": message }).to_string(),
    }
}

fn assert_signed(seen: &Recorded, operation: &str) {
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, format!("{WIRE_PATH}/{operation}"));
    let authorization = seen.header("authorization").unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{authorization}"
    );
    assert!(authorization.contains("/us-east-1/bedrock/aws4_request"));
    assert_eq!(seen.header("x-amz-security-token"), Some(SESSION_TOKEN));
    assert!(seen.header("x-amz-date").is_some());
    assert!(!seen.headers.iter().any(|(_, v)| v.contains(SECRET)));
}

/// Every event of a streamed chat of `message` (which must start with a 200).
async fn stream_events(gw: &Gateway, message: &str) -> Vec<String> {
    let mut conn = Conn::open(gw.addr).await.unwrap();
    let body = format!(r#"{{"model":"claude","stream":true,"messages":[{message}]}}"#);
    conn.send(&post("/v1/chat/completions", &body))
        .await
        .unwrap();
    assert_eq!(conn.read_head().await.unwrap().status, 200);
    Events::new(conn).rest().await.unwrap()
}

async fn chat(gw: &Gateway, body: &str) -> Response {
    exchange(gw.addr, &post("/v1/chat/completions", body)).await
}

#[tokio::test]
async fn a_chat_request_becomes_a_signed_converse_call_and_its_answer_an_openai_one() {
    let up = FakeUpstream::start(|_| {
        Reply::ok(json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Checking."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42},
            "metrics": {"latencyMs": 310}
        }))
    })
    .await;
    let gw = Gateway::start(&bedrock_config(&up.url(""))).await;
    let r = chat(
        &gw,
        r#"{"model":"claude","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Weather in Paris?"}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"max_tokens":64}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-switchyard-provider"), Some("br"));
    let answer = r.json();
    assert_eq!(answer["model"], MODEL_ID);
    assert_eq!(answer["object"], "chat.completion");
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], "Checking.");
    assert_eq!(message["tool_calls"][0]["id"], "tooluse_1");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(answer["usage"]["total_tokens"], 42);
    let seen = &up.received()[0];
    assert_signed(seen, "converse");
    assert_eq!(
        String::from_utf8(seen.body.clone()).unwrap(),
        r#"{"messages":[{"role":"user","content":[{"text":"Weather in Paris?"}]}],"system":[{"text":"Be brief."}],"inferenceConfig":{"maxTokens":64},"toolConfig":{"tools":[{"toolSpec":{"name":"get_weather","inputSchema":{"json":{"type":"object"}}}}]}}"#
    );
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["target"], format!("br/{MODEL_ID}"));
    assert_eq!(
        (log["input_tokens"].as_u64(), log["output_tokens"].as_u64()),
        (Some(30), Some(12))
    );
}

#[tokio::test]
async fn a_captured_converse_stream_arrives_as_openai_chunks() {
    let up = FakeUpstream::start(|_| {
        event_stream(
            &capture("envoy-converse-stream-text-tooluse.bin"),
            StreamEnd::Clean,
        )
    })
    .await;
    let gw = Gateway::start(&bedrock_config(&up.url(""))).await;
    let mut conn = Conn::open(gw.addr).await.unwrap();
    conn.send(&post(
        "/v1/chat/completions",
        r#"{"model":"claude","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"cos(7)?"}]}"#,
    ))
    .await
    .unwrap();
    let head = conn.read_head().await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let events = Events::new(conn).rest().await.unwrap();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    // The capture's text deltas, in order.
    assert_eq!(
        text,
        "To calculate the cosine of 7, we can use the \"cosine\" function that is available to us. Let's use this function to get the result."
    );
    let calls: Vec<&serde_json::Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["id"], "tooluse_QklrEHKjRu6Oc4BQUfy7ZQ");
    assert_eq!(calls[0]["function"]["name"], "cosine");
    let arguments: String = calls
        .iter()
        .map(|c| c["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(arguments, r#"{"x": 7}"#);
    assert!(calls.iter().all(|c| c["index"] == 0));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 386);
    assert_eq!(usage["usage"]["completion_tokens"], 75);
    assert_signed(&up.received()[0], "converse-stream");
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["status"], 200);
    assert_eq!(log["output_tokens"], 75);
}

#[tokio::test]
async fn an_exception_frame_after_content_ends_the_stream_with_an_error_event() {
    let text = capture("envoy-converse-stream-text.bin");
    // The first three frames (messageStart and two text deltas), then the
    // captured modelStreamErrorException.
    let mut at = 0;
    for _ in 0..3 {
        at += u32::from_be_bytes(text[at..at + 4].try_into().unwrap()) as usize;
    }
    let mut wire = text[..at].to_vec();
    wire.extend_from_slice(&capture("vercel-model-stream-error-exception.bin"));
    let up = FakeUpstream::start(move |_| event_stream(&wire, StreamEnd::Clean)).await;
    let gw = Gateway::start(&bedrock_config(&up.url(""))).await;
    let events = stream_events(&gw, r#"{"role":"user","content":"hi"}"#).await;
    assert_eq!(events.len(), 4, "{events:?}");
    let last: serde_json::Value = serde_json::from_str(&events[3]).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Model Stream Error"));
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let log = &gw.log_lines(1).await[0];
    assert_eq!(log["error"], "upstream_stream_error");
}

#[tokio::test]
async fn a_stream_cut_mid_frame_is_an_error_not_a_clean_end() {
    let text = capture("envoy-converse-stream-text.bin");
    let cut = text[..text.len() - 40].to_vec();
    let up = FakeUpstream::start(move |_| event_stream(&cut, StreamEnd::Cut)).await;
    let gw = Gateway::start(&bedrock_config(&up.url(""))).await;
    let events = stream_events(&gw, r#"{"role":"user","content":"hi"}"#).await;
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!events.iter().any(|e| e == "[DONE]"));
}

#[tokio::test]
async fn bedrock_errors_become_openai_errors_with_the_mapped_status() {
    let up = FakeUpstream::start(|seen: &Recorded| {
        let prompt = seen.json()["messages"][0]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match prompt.as_str() {
            "validation" => bedrock_error(
                400,
                "ValidationException",
                "A conversation must start with a user message.",
            ),
            "throttled" => bedrock_error(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            ),
            "quota" => bedrock_error(
                400,
                "ServiceQuotaExceededException",
                "Your quota is used up.",
            ),
            "denied" => bedrock_error(
                403,
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
            ),
            "missing" => bedrock_error(
                404,
                "ResourceNotFoundException",
                "Could not resolve the foundation model.",
            ),
            "model-timeout" => bedrock_error(408, "ModelTimeoutException", "Model has timed out."),
            "model-error" => {
                bedrock_error(424, "ModelErrorException", "The model returned an error.")
            }
            _ => bedrock_error(503, "ServiceUnavailableException", "Service unavailable."),
        }
    })
    .await;
    let gw = Gateway::start(&bedrock_config(&up.url(""))).await;
    for (prompt, status, code) in [
        ("validation", 400, "invalid_request"),
        ("throttled", 429, "rate_limit_exceeded"),
        ("quota", 429, "insufficient_quota"),
        ("denied", 502, "upstream_auth_failed"),
        ("missing", 502, "upstream_model_not_found"),
        ("model-timeout", 504, "upstream_timeout"),
        ("model-error", 502, "upstream_error"),
        ("unavailable", 502, "upstream_error"),
    ] {
        let r = chat(
            &gw,
            &format!(r#"{{"model":"claude","messages":[{{"role":"user","content":"{prompt}"}}]}}"#),
        )
        .await;
        assert_eq!(
            (r.status, r.error_code()),
            (status, code.to_string()),
            "{prompt}"
        );
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert!(!body.contains(SECRET) && !body.contains(SESSION_TOKEN));
        if prompt == "validation" {
            // The upstream's words, then the id that finds the log line.
            let id = r.header("x-request-id").unwrap();
            assert_eq!(
                r.json()["error"]["message"],
                format!("A conversation must start with a user message. (request id: {id})")
            );
        }
        if prompt == "throttled" {
            assert_eq!(r.header("retry-after"), Some("1"));
        }
    }
}

#[tokio::test]
async fn an_image_url_is_refused_before_bedrock_is_called() {
    let up = FakeUpstream::start(|_| Reply::ok(json!({}))).await;
    let gw = Gateway::start(&bedrock_config(&up.url(""))).await;
    let r = chat(
        &gw,
        r#"{"model":"claude","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}]}]}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["param"],
        "messages[0].content[0].image_url.url"
    );
    assert!(up.received().is_empty());
}

#[test]
fn bedrock_configs_are_checked() {
    let ok = check_config(&bedrock_config(
        "https://bedrock-runtime.us-east-1.amazonaws.com",
    ));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let both = config(
        None,
        "providers:\n  br:\n    type: bedrock\n    region: us-east-1\n    api_key: k\n    access_key_id: a\n    secret_access_key: s\nmodels:\n  m:\n    targets:\n      - { provider: br, model: x }\n",
    );
    let out = check_config(&both);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("either `access_key_id`"));
    let no_region = config(
        None,
        "providers:\n  br:\n    type: bedrock\n    api_key: k\nmodels:\n  m:\n    targets:\n      - { provider: br, model: x }\n",
    );
    let out = check_config(&no_region);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("region"));
}

/// One event-stream message with string headers, encoded by AWS's codec.
fn frame(headers: &[(&'static str, &'static str)], payload: &str) -> Vec<u8> {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let mut message = Message::new(payload.as_bytes().to_vec());
    for (name, value) in headers {
        message = message.add_header(Header::new(*name, HeaderValue::String((*value).into())));
    }
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out).unwrap();
    out
}

#[tokio::test]
async fn an_exception_before_any_content_is_answered_like_the_http_error() {
    let start = frame(
        &[(":message-type", "event"), (":event-type", "messageStart")],
        r#"{"role":"assistant"}"#,
    );
    let exception = |name: &'static str, message: &'static str| {
        let mut wire = start.clone();
        wire.extend(frame(
            &[(":message-type", "exception"), (":exception-type", name)],
            &json!({ "message": message }).to_string(),
        ));
        wire
    };
    let throttled = exception("throttlingException", "Too many tokens, please wait.");
    let invalid = exception(
        "validationException",
        "The model does not support tool use in streaming mode.",
    );
    let up = FakeUpstream::start(move |seen: &Recorded| {
        let prompt = seen.json()["messages"][0]["content"][0]["text"].clone();
        let wire = if prompt == "throttle" {
            &throttled
        } else {
            &invalid
        };
        event_stream(wire, StreamEnd::Clean)
    })
    .await;
    let gw = Gateway::start(&bedrock_config(&up.url(""))).await;
    for (prompt, status, code) in [
        ("throttle", 429, "rate_limit_exceeded"),
        ("invalid", 400, "invalid_request"),
    ] {
        let body = format!(
            r#"{{"model":"claude","stream":true,"messages":[{{"role":"user","content":"{prompt}"}}]}}"#
        );
        let r = chat(&gw, &body).await;
        assert_eq!(
            (r.status, r.error_code()),
            (status, code.to_string()),
            "{prompt}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // Each line is written once its answer is out, so the two may come in
    // either order.
    let mut logged: Vec<u64> = gw
        .log_lines(2)
        .await
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    logged.sort();
    assert_eq!(logged, [400, 429]);
}
