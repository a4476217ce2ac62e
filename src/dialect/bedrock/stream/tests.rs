//! The ConverseStream translator against real Bedrock captures
//! (`../shared/vectors/eventstream/bedrock-captures`), fed in pieces of every
//! kind of size. The expected SSE events are written out by hand from the
//! captures' decoded frames.

use std::path::{Path, PathBuf};

use super::super::completion::AnswerIdentity;
use super::StreamState;
use crate::dialect::{ClientEvent, UpstreamFault};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn capture(name: &str) -> Vec<u8> {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/eventstream/bedrock-captures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn state(include_usage: bool) -> StreamState {
    StreamState::new(
        &AnswerIdentity {
            id: "chatcmpl-r1",
            created: 1_700_000_000,
            model: MODEL,
        },
        include_usage,
    )
}

/// Piece sizes: single bytes, sizes around the 12-byte prelude, odd primes, a
/// pseudo-random walk, and the whole capture at once.
fn cuts(len: usize) -> Vec<Vec<usize>> {
    let mut plans: Vec<Vec<usize>> = [1, 2, 11, 12, 13, 97, 160, len]
        .iter()
        .map(|&n| vec![n])
        .collect();
    let mut seed: u32 = 0x9e37_79b9;
    let mut walk = Vec::new();
    for _ in 0..64 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        walk.push(1 + (seed % 300) as usize);
    }
    plans.push(walk);
    plans
}

/// Feeds `wire` cut by `plan` (sizes repeat), then finishes.
fn translate(
    wire: &[u8],
    plan: &[usize],
    include_usage: bool,
) -> (Vec<ClientEvent>, Result<(), String>, StreamState) {
    let mut state = state(include_usage);
    let mut events = Vec::new();
    let mut at = 0;
    let mut sizes = plan.iter().cycle();
    while at < wire.len() {
        let end = (at + sizes.next().unwrap()).min(wire.len());
        if let Err(e) = state.feed(&wire[at..end], &mut events) {
            return (events, Err(e), state);
        }
        at = end;
    }
    let finished = state.finish();
    (events, finished, state)
}

/// Where each frame of `wire` starts, read from the frames' length prefixes.
fn frame_starts(wire: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        starts.push(at);
        at += u32::from_be_bytes(wire[at..at + 4].try_into().unwrap()) as usize;
    }
    starts
}

fn chunk(delta: &str, finish: &str) -> String {
    format!(
        r#"data: {{"id":"chatcmpl-r1","object":"chat.completion.chunk","created":1700000000,"model":"{MODEL}","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
    ) + "\n\n"
}

fn texts(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8(e.bytes.to_vec()).unwrap())
        .collect()
}

#[test]
fn the_text_capture_becomes_exactly_these_chunks_however_it_is_cut() {
    let wire = capture("envoy-converse-stream-text.bin");
    let expected = vec![
        chunk(r#"{"role":"assistant","content":""}"#, "null"),
        chunk(r#"{"content":"Don"}"#, "null"),
        chunk(r#"{"content":"'t worry, I'm here to help. It"}"#, "null"),
        chunk(
            r#"{"content":" seems like you're testing my ability to respond appropriately"}"#,
            "null",
        ),
        chunk(
            r#"{"content":". If you'd like to continue the test,"}"#,
            "null",
        ),
        chunk(r#"{"content":" I'm ready."}"#, "null"),
        chunk("{}", r#""stop""#),
        "data: [DONE]\n\n".to_string(),
    ];
    for plan in cuts(wire.len()) {
        let (events, finished, state) = translate(&wire, &plan, false);
        finished.unwrap();
        assert_eq!(texts(&events), expected, "cut {plan:?}");
        let flags: Vec<(bool, bool)> = events.iter().map(|e| (e.content, e.done)).collect();
        assert_eq!(
            flags,
            [
                (false, false),
                (true, false),
                (true, false),
                (true, false),
                (true, false),
                (true, false),
                (false, false),
                (false, true)
            ]
        );
        // From the capture's metadata: 41 input, 36 output tokens.
        let usage = state.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (41, 36));
        // The five text deltas above: 3 + 30 + 62 + 37 + 11 characters.
        assert_eq!(state.output_chars(), 143);
    }
}

#[test]
fn the_usage_chunk_comes_only_when_asked_for() {
    let wire = capture("envoy-converse-stream-text.bin");
    let (events, finished, _) = translate(&wire, &[64], true);
    finished.unwrap();
    let texts = texts(&events);
    assert_eq!(texts.len(), 9);
    assert_eq!(
        texts[7],
        format!(
            r#"data: {{"id":"chatcmpl-r1","object":"chat.completion.chunk","created":1700000000,"model":"{MODEL}","choices":[],"usage":{{"prompt_tokens":41,"completion_tokens":36,"total_tokens":77,"prompt_tokens_details":{{"cached_tokens":0}}}}}}"#
        ) + "\n\n"
    );
    assert_eq!(texts[8], "data: [DONE]\n\n");
}

#[test]
fn the_tool_use_capture_streams_one_tool_call_with_stable_index_id_and_name() {
    let wire = capture("envoy-converse-stream-text-tooluse.bin");
    for plan in cuts(wire.len()) {
        let (events, finished, _) = translate(&wire, &plan, true);
        finished.unwrap();
        let texts = texts(&events);
        // Role, 17 text deltas, tool start, one argument fragment (the empty first
        // fragment is skipped), finish, usage, [DONE].
        assert_eq!(texts.len(), 23, "cut {plan:?}");
        assert_eq!(texts[1], chunk(r#"{"content":"To"}"#, "null"));
        assert_eq!(texts[5], chunk(r#"{"content":" \""}"#, "null"));
        assert_eq!(
            texts[18],
            chunk(
                r#"{"tool_calls":[{"index":0,"id":"tooluse_QklrEHKjRu6Oc4BQUfy7ZQ","type":"function","function":{"name":"cosine","arguments":""}}]}"#,
                "null"
            )
        );
        assert_eq!(
            texts[19],
            chunk(
                r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\": 7}"}}]}"#,
                "null"
            )
        );
        assert_eq!(texts[20], chunk("{}", r#""tool_calls""#));
        assert!(texts[21]
            .contains(r#""usage":{"prompt_tokens":386,"completion_tokens":75,"total_tokens":461"#));
        assert_eq!(texts[22], "data: [DONE]\n\n");
        assert!(events[18].content && events[19].content);
        // The tool's name "cosine" and its input `{"x": 7}` count as generated
        // text, after the 17 text deltas.
        let text_chars: u64 = events[1..18]
            .iter()
            .map(|e| {
                let data = std::str::from_utf8(&e.bytes).unwrap();
                let v: serde_json::Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap().trim_end()).unwrap();
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .count() as u64
            })
            .sum();
        let (_, _, state) = translate(&wire, &plan, true);
        assert_eq!(state.output_chars(), text_chars + 6 + 8);
    }
}

#[test]
fn an_exception_frame_becomes_an_error_event_that_ends_the_stream() {
    let wire = capture("vercel-model-stream-error-exception.bin");
    for plan in [vec![1], vec![50], vec![wire.len()]] {
        let (events, finished, _) = translate(&wire, &plan, false);
        finished.unwrap();
        assert_eq!(events.len(), 1);
        assert!(events[0].error && !events[0].done);
        let text = String::from_utf8(events[0].bytes.to_vec()).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        // The capture: modelStreamErrorException, "Model Stream Error" (5xx class),
        // the model's own status and words kept.
        assert!(matches!(
            events[0].fault,
            Some(UpstreamFault::Server { .. })
        ));
        assert_eq!(json["error"]["code"], "upstream_error");
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(model: 500 The model stream failed.)"));
        assert_eq!(json["error"]["type"], "server_error");
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("modelStreamErrorException: Model Stream Error"));
        assert!(json["error"]["param"].is_null());
    }
}

#[test]
fn an_exception_after_content_still_ends_in_an_error() {
    let text = capture("envoy-converse-stream-text.bin");
    let exception = capture("vercel-model-stream-error-exception.bin");
    // Cut at the fourth frame's start (after messageStart and two text deltas),
    // found by walking the frame lengths.
    let mut wire = text[..frame_starts(&text)[3]].to_vec();
    wire.extend_from_slice(&exception);
    let (events, finished, _) = translate(&wire, &[7], false);
    finished.unwrap();
    assert_eq!(events.len(), 4);
    assert!(events[1].content && events[2].content);
    assert!(events[3].error);
}

#[test]
fn a_corrupt_frame_mid_stream_is_an_error_after_the_good_ones() {
    let mut wire = capture("envoy-converse-stream-text.bin");
    // Flip a payload byte of the third frame: its message CRC no longer matches.
    let third = frame_starts(&wire)[2];
    wire[third + 100] ^= 0x20;
    let (events, result, _) = translate(&wire, &[33], false);
    assert_eq!(events.len(), 2);
    let error = result.unwrap_err();
    assert!(error.contains("invalid event-stream message"), "{error}");
}

#[test]
fn a_stream_cut_inside_a_frame_or_before_metadata_is_an_error() {
    let wire = capture("envoy-converse-stream-text.bin");
    let (_, inside, _) = translate(&wire[..wire.len() - 5], &[64], false);
    assert!(inside.unwrap_err().contains("inside an event frame"));
    let last = *frame_starts(&wire).last().unwrap();
    let (events, before_metadata, _) = translate(&wire[..last], &[64], false);
    assert!(before_metadata
        .unwrap_err()
        .contains("before its `metadata`"));
    assert!(
        !events.iter().any(|e| e.done),
        "no [DONE] on a truncated answer"
    );
}
