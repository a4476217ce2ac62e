//! Real Converse bodies (`../shared/vectors/fixtures/vercel-ai/amazon-bedrock`)
//! → `chat.completion`, with the expected values written out by hand.

use std::path::Path;

use serde_json::{json, Value};

use super::{chat_completion, finish_reason, AnswerIdentity};

const IDENTITY: AnswerIdentity<'static> = AnswerIdentity {
    id: "chatcmpl-r1",
    created: 1_700_000_000,
    model: "anthropic.claude-3-haiku-20240307-v1:0",
};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/fixtures/vercel-ai/amazon-bedrock")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn translate(body: &[u8]) -> (Value, crate::record::Usage) {
    let (json, usage) = chat_completion(body, &IDENTITY).unwrap();
    (serde_json::from_slice(&json).unwrap(), usage)
}

#[test]
fn a_text_answer_becomes_a_whole_chat_completion() {
    let (answer, usage) = translate(&fixture("amazon-bedrock-text.json"));
    assert_eq!(
        answer,
        json!({
            "id": "chatcmpl-r1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "anthropic.claude-3-haiku-20240307-v1:0",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me count the \"r\"s in \"strawberry\":\n\ns-t-**r**-a-w-b-e-**r**-**r**-y\n\nThere are **3** \"r\"s in \"strawberry.\"",
                    "refusal": null
                },
                "finish_reason": "stop",
                "logprobs": null
            }],
            "usage": {
                "prompt_tokens": 22,
                "completion_tokens": 57,
                "total_tokens": 79,
                "prompt_tokens_details": {"cached_tokens": 0}
            }
        })
    );
    assert_eq!((usage.input_tokens, usage.output_tokens), (22, 57));
}

#[test]
fn text_and_several_tool_uses_become_content_and_tool_calls_in_order() {
    let (answer, _) = translate(&fixture("amazon-bedrock-json-with-tool.1.json"));
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], "Let me call a tool first.Now the JSON.");
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "tool-1");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get-weather");
    let arguments: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"location": "SF"}));
    assert_eq!(calls[1]["id"], "json-tool-id");
    let arguments: Value =
        serde_json::from_str(calls[1]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"result": "data"}));
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(answer["usage"]["total_tokens"], 70);
}

#[test]
fn a_tool_call_without_arguments_has_an_empty_object_and_the_text_beside_it() {
    let (answer, _) = translate(&fixture("amazon-bedrock-tool-no-args.json"));
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], "I'll update the issue list for you.");
    assert_eq!(message["tool_calls"][0]["id"], "tool-use-id");
    assert_eq!(
        message["tool_calls"][0]["function"]["name"],
        "updateIssueList"
    );
    assert_eq!(message["tool_calls"][0]["function"]["arguments"], "{}");
}

#[test]
fn only_tool_calls_means_null_content() {
    let (answer, _) = translate(&fixture("amazon-bedrock-json-tool.1.json"));
    assert!(answer["choices"][0]["message"]["content"].is_null());
    assert_eq!(
        answer["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn reasoning_text_is_kept_apart_from_the_answer() {
    let (answer, _) = translate(&fixture("amazon-bedrock-reasoning.json"));
    let message = &answer["choices"][0]["message"];
    assert_eq!(
        message["reasoning_content"],
        "Let me count the r's in \"strawberry\":\n\ns-t-r-a-w-b-e-r-r-y\n\nThere are 3 r's."
    );
    assert_eq!(
        message["content"],
        "There are **3** r's in \"strawberry\":\n\n1. st**r**awbe**r****r**y"
    );
}

#[test]
fn guardrail_and_max_tokens_endings_map() {
    let (guarded, _) = translate(&fixture("amazon-bedrock-guard-content-intervened.json"));
    assert_eq!(guarded["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        guarded["choices"][0]["message"]["content"],
        "Sorry, the model cannot answer this question."
    );
    let (cut, _) = translate(&fixture("issue-17523-converse.json"));
    assert_eq!(cut["choices"][0]["finish_reason"], "length");
}

#[test]
fn cached_tokens_count_as_prompt_tokens_and_are_reported_apart() {
    let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn","usage":{"inputTokens":10,"outputTokens":5,"totalTokens":135,"cacheReadInputTokens":100,"cacheWriteInputTokens":20}}"#;
    let (answer, usage) = translate(body);
    assert_eq!(
        answer["usage"],
        json!({
            "prompt_tokens": 130,
            "completion_tokens": 5,
            "total_tokens": 135,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20}
        })
    );
    assert_eq!((usage.input_tokens, usage.output_tokens), (130, 5));
}

#[test]
fn every_stop_reason_has_a_finish_reason() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_model_output", "stop"),
        ("malformed_tool_use", "stop"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
    ] {
        assert_eq!(finish_reason(stop), finish, "{stop}");
    }
}

#[test]
fn a_body_that_is_not_a_converse_response_is_an_error() {
    assert!(chat_completion(br#"{"choices":[]}"#, &IDENTITY).is_err());
    assert!(chat_completion(b"not json", &IDENTITY).is_err());
}
