//! The `mock` provider: answers inside the gateway, with no credentials.
//!
//! It is a real feature, not a test double: `make run` demos, smoke tests and health
//! checks use it. Answers are deterministic and derived from the request — the chat
//! answer echoes the last user message — with usage counted the way the gateway
//! estimates tokens (characters ÷ 4, at least 1), streamed in several chunks.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::llm_request::{LlmRequest, Operation};
use crate::record::Usage;

/// Dimensions of a mock embedding when the request names none.
const DEFAULT_DIMENSIONS: usize = 16;
/// Largest embedding the mock makes, to bound the work a request can ask for.
const MAX_DIMENSIONS: usize = 4096;
/// Characters per streamed content chunk.
const CHUNK_CHARS: usize = 16;

/// A finished mock answer.
pub enum MockAnswer {
    Whole { body: Bytes, usage: Usage },
    Stream { events: Vec<Bytes>, usage: Usage },
}

#[derive(Deserialize)]
struct Chat {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Value,
}

#[derive(Deserialize)]
struct Embeddings {
    input: Value,
    dimensions: Option<usize>,
    encoding_format: Option<String>,
}

/// Tokens as the gateway estimates them: characters ÷ 4, rounded up, at least 1.
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// The text of a message's `content`: a string, or the `text` of its parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid_request("invalid_value", message)
}

/// Answers `request` as the model `model`; `request_id` makes the answer id.
pub fn answer(request: &LlmRequest, model: &str, request_id: &str) -> Result<MockAnswer, ApiError> {
    match request.operation {
        Operation::ChatCompletions => chat(request, model, request_id),
        Operation::Embeddings => embeddings(request, model),
    }
}

fn chat(request: &LlmRequest, model: &str, request_id: &str) -> Result<MockAnswer, ApiError> {
    let chat: Chat = serde_json::from_slice(&request.body)
        .map_err(|e| bad(format!("Invalid 'messages': {e}.")).with_param("messages"))?;
    if chat.messages.is_empty() {
        return Err(bad("Invalid 'messages': empty array.").with_param("messages"));
    }
    let prompt: String = chat.messages.iter().map(|m| text_of(&m.content)).collect();
    let last_user = chat
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| text_of(&m.content))
        .unwrap_or_default();
    let mut content = last_user;
    let mut finish_reason = "stop";
    if let Some(limit) = request.max_tokens {
        let max_chars = usize::try_from(limit.saturating_mul(4)).unwrap_or(usize::MAX);
        if content.chars().count() > max_chars {
            content = content.chars().take(max_chars).collect();
            finish_reason = "length";
        }
    }
    let usage = Usage {
        input_tokens: tokens(&prompt),
        output_tokens: tokens(&content),
    };
    let usage_json = json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    });
    let id = format!("chatcmpl-mock-{request_id}");
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !request.stream {
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null},
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
            "usage": usage_json,
        });
        return Ok(MockAnswer::Whole {
            body: Bytes::from(body.to_string()),
            usage,
        });
    }
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let chars: Vec<char> = content.chars().collect();
    for piece in chars.chunks(CHUNK_CHARS) {
        let text: String = piece.iter().collect();
        events.push(chunk(json!({"content": text}), Value::Null));
    }
    events.push(chunk(json!({}), json!(finish_reason)));
    if request.include_usage {
        events.push(json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage_json,
        }));
    }
    let mut events: Vec<Bytes> = events
        .iter()
        .map(|e| super::ClientEvent::data(e.to_string().as_bytes()))
        .collect();
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(MockAnswer::Stream { events, usage })
}

fn embeddings(request: &LlmRequest, model: &str) -> Result<MockAnswer, ApiError> {
    let req: Embeddings = serde_json::from_slice(&request.body)
        .map_err(|e| bad(format!("Invalid embeddings request: {e}.")))?;
    let dimensions = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
        return Err(bad(format!(
            "'dimensions' must be between 1 and {MAX_DIMENSIONS}."
        ))
        .with_param("dimensions"));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad(format!("'{other}' is not one of 'float', 'base64'."))
                .with_param("encoding_format"))
        }
    };
    let inputs: Vec<String> = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.is_empty() => {
            return Err(bad("'input' must not be empty.").with_param("input"))
        }
        Value::Array(items) if items.iter().all(Value::is_number) => vec![req.input.to_string()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect(),
        _ => return Err(bad("'input' must be a string or a non-empty array.").with_param("input")),
    };
    let prompt_tokens: u64 = inputs.iter().map(|i| tokens(i)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = vector(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Ok(MockAnswer::Whole {
        body: Bytes::from(body.to_string()),
        usage: Usage {
            input_tokens: prompt_tokens,
            output_tokens: 0,
        },
    })
}

/// A unit-length vector derived from the text (FNV-1a seeded per dimension).
fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let raw: Vec<f32> = (0..dimensions as u64)
        .map(|d| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ d;
            for b in text.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    raw.iter().map(|x| x / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(op: Operation, body: &str) -> LlmRequest {
        LlmRequest::parse(op, Bytes::from(body.to_string())).unwrap()
    }

    #[test]
    fn chat_echoes_the_last_user_message_with_usage() {
        let req = request(
            Operation::ChatCompletions,
            r#"{"model":"demo","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello there"}]}]}"#,
        );
        let MockAnswer::Whole { body, usage } = answer(&req, "mock-1", "r1").unwrap() else {
            panic!("expected a whole answer")
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hello there");
        assert_eq!(v["model"], "mock-1");
        assert_eq!(v["id"], "chatcmpl-mock-r1");
        // "be brief" + "hello there" = 19 characters -> 5 tokens; "hello there" -> 3.
        assert_eq!(
            usage,
            Usage {
                input_tokens: 5,
                output_tokens: 3
            }
        );
        assert_eq!(v["usage"]["total_tokens"], 8);
    }

    #[test]
    fn streams_in_several_chunks_and_ends_with_done() {
        let req = request(
            Operation::ChatCompletions,
            r#"{"model":"demo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three four five six seven"}]}"#,
        );
        let MockAnswer::Stream { events, .. } = answer(&req, "mock-1", "r1").unwrap() else {
            panic!("expected a stream")
        };
        // role chunk + 3 content chunks (33 chars / 16) + finish + usage + [DONE]
        assert_eq!(events.len(), 7);
        assert_eq!(&events[6][..], b"data: [DONE]\n\n");
        let text: String = events[1..4]
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_slice(&e[6..e.len() - 2]).unwrap();
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(text, "one two three four five six seven");
    }

    #[test]
    fn max_tokens_truncates_with_length() {
        let req = request(
            Operation::ChatCompletions,
            r#"{"model":"demo","max_tokens":1,"messages":[{"role":"user","content":"abcdefgh"}]}"#,
        );
        let MockAnswer::Whole { body, .. } = answer(&req, "m", "r").unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "abcd");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let req = request(
            Operation::Embeddings,
            r#"{"model":"e","input":["a","b"],"dimensions":8}"#,
        );
        let MockAnswer::Whole { body, .. } = answer(&req, "e", "r").unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        let first: Vec<f64> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(first.len(), 8);
        let norm: f64 = first.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_ne!(v["data"][0]["embedding"], v["data"][1]["embedding"]);
        let again = answer(&req, "e", "r").unwrap();
        let MockAnswer::Whole { body: body2, .. } = again else {
            panic!()
        };
        assert_eq!(body, body2);
        let bad = request(
            Operation::Embeddings,
            r#"{"model":"e","input":[],"dimensions":8}"#,
        );
        assert_eq!(
            answer(&bad, "e", "r").err().unwrap().param.as_deref(),
            Some("input")
        );
    }
}
