//! Golden tests for the OpenAI dialect against real recordings in `../shared/vectors/`.

use super::*;
use crate::dialect::vectors;

/// `(request body, response status, response body)` of a cassette's first interaction.
fn cassette(name: &str) -> (String, u64, String) {
    let i = vectors::cassette(name);
    (i.request_body, i.status, i.response_body)
}

fn translate_stream(body: &str, piece: usize) -> (Vec<ClientEvent>, Passthrough) {
    let mut t = Passthrough::default();
    let mut out = Vec::new();
    for chunk in body.as_bytes().chunks(piece) {
        t.feed(chunk, &mut out).unwrap();
    }
    t.finish(&mut out).unwrap();
    (out, t)
}

#[test]
fn recorded_stream_passes_through_event_by_event() {
    let (_, status, body) = cassette("chat-streaming.yaml");
    assert_eq!(status, 200);
    // The expected events, read straight from the recording.
    let expected: Vec<&str> = body
        .split("\n\n")
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    for piece in [1, 7, 64, 4096, body.len()] {
        let (events, _) = translate_stream(&body, piece);
        let got: Vec<String> = events
            .iter()
            .map(|e| {
                String::from_utf8(e.bytes.to_vec())
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect();
        assert_eq!(got, expected, "piece size {piece}");
        // The first chunk is role-only ("content":""); "Hi" is the first content.
        assert!(!events[0].content);
        assert!(events[1].content);
        assert!(events.last().unwrap().done);
        assert!(events.iter().all(|e| !e.error));
    }
}

#[test]
fn recorded_stream_usage_is_read() {
    let (_, _, body) = cassette("chat-detailed-usage.yaml");
    if body.starts_with("data:") {
        let (_, t) = translate_stream(&body, 13);
        assert!(t.usage().is_some());
    } else {
        let mut t = Passthrough::default();
        let answer = t.whole(Bytes::from(body.clone())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            answer.usage,
            Some(Usage {
                input_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap(),
                output_tokens: v["usage"]["completion_tokens"].as_u64().unwrap(),
            })
        );
        assert_eq!(answer.body, Bytes::from(body));
    }
}

#[test]
fn recorded_whole_answer_is_unchanged_and_usage_read() {
    let (_, status, body) = cassette("chat-basic.yaml");
    assert_eq!(status, 200);
    let mut t = Passthrough::default();
    let answer = t.whole(Bytes::from(body.clone())).unwrap();
    assert_eq!(answer.body, Bytes::from(body.clone()));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer.usage.unwrap().input_tokens,
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
}

#[test]
fn recorded_client_errors_keep_status_and_message() {
    let (_, status, body) = cassette("chat-bad-request.yaml");
    let fault = OpenAi.classify(status as u16, &http::HeaderMap::new(), body.as_bytes());
    let UpstreamFault::Client(e) = fault else {
        panic!("a 400 is the client's fault, got {fault:?}");
    };
    assert_eq!(e.status, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e.message, v["error"]["message"].as_str().unwrap());
    assert_eq!(e.code.as_deref(), v["error"]["code"].as_str());
    assert_eq!(e.param.as_deref(), v["error"]["param"].as_str());
}

#[test]
fn truncated_streams_are_errors() {
    let mut t = Passthrough::default();
    let mut out = Vec::new();
    t.feed(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        &mut out,
    )
    .unwrap();
    assert!(t.finish(&mut out).unwrap_err().contains("[DONE]"));
    let mut t = Passthrough::default();
    t.feed(b"data: {\"choi", &mut out).unwrap();
    assert!(t.finish(&mut out).is_err());
}

#[test]
fn error_events_are_flagged() {
    let mut t = Passthrough::default();
    let mut out = Vec::new();
    t.feed(
        b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
        &mut out,
    )
    .unwrap();
    assert!(out[0].error && !out[0].content);
}

#[test]
fn recorded_stream_counts_its_generated_characters() {
    let (_, _, body) = cassette("chat-streaming.yaml");
    // The content of every chunk, read from the recording with a plain JSON parser.
    let expected: usize = body
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<serde_json::Value>(data).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(|c| c.chars().count())
        })
        .sum();
    assert!(expected > 0);
    let (_, t) = translate_stream(&body, 5);
    assert_eq!(t.output_chars(), expected as u64);
}

#[test]
fn tool_call_arguments_and_names_count_as_generated_text() {
    let mut t = Passthrough::default();
    let mut out = Vec::new();
    t.feed(
        br#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}

"#,
        &mut out,
    )
    .unwrap();
    // "get_weather" is 11 characters; `{"city":` is 8.
    assert_eq!(t.output_chars(), 11 + 8);
}

#[test]
fn the_usage_chunk_the_gateway_asked_for_is_read_and_dropped() {
    let stream = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10}}\n\n",
        "data: [DONE]\n\n",
    );
    let request = |body: &str| {
        LlmRequest::parse(Operation::ChatCompletions, Bytes::from(body.to_string())).unwrap()
    };
    let not_asked = request(r#"{"model":"m","messages":[],"stream":true}"#);
    let asked = request(
        r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    for (request, events) in [(not_asked, 3), (asked, 4)] {
        let mut t = Passthrough::for_request(&request);
        let mut out = Vec::new();
        t.feed(stream.as_bytes(), &mut out).unwrap();
        t.finish(&mut out).unwrap();
        assert_eq!(out.len(), events);
        assert_eq!(
            t.usage(),
            Some(Usage {
                input_tokens: 9,
                output_tokens: 1
            })
        );
    }
}
