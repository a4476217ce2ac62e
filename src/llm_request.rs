//! The few fields of an LLM request body the gateway needs, read without
//! re-serialising the rest.
//!
//! Only `model`, `stream`, `stream_options` and the token limits are decoded; the
//! messages stay bytes. `model` is replaced by splicing its byte range, so unknown
//! fields, key order, number formatting and large base64 images reach the upstream
//! exactly as the client sent them.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::errors::ApiError;
use crate::json_members::quoted;

/// The two body-carrying OpenAI operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Embeddings,
}

/// A request body with its routing fields decoded.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub operation: Operation,
    pub body: Bytes,
    pub model: String,
    /// Where `model` is in `body`; `None` when the model came from the URL and
    /// the body has none.
    model_span: Option<Range<usize>>,
    pub stream: bool,
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

impl LlmRequest {
    /// Decodes the routing fields, answering 400 for a body OpenAI would refuse.
    pub fn parse(operation: Operation, body: Bytes) -> Result<LlmRequest, ApiError> {
        Self::parse_with(operation, body, None)
    }

    /// Like [`parse`](Self::parse) for Azure's URL shape, where the model is named
    /// in the path: `model` in the body is optional and ignored, as Azure does.
    pub fn parse_for_model(
        operation: Operation,
        body: Bytes,
        model: &str,
    ) -> Result<LlmRequest, ApiError> {
        Self::parse_with(operation, body, Some(model))
    }

    fn parse_with(
        operation: Operation,
        body: Bytes,
        path_model: Option<&str>,
    ) -> Result<LlmRequest, ApiError> {
        let not_json = |detail: String| {
            ApiError::invalid_request(
                "invalid_json",
                format!("The request body is not a valid JSON object: {detail}."),
            )
        };
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(not_json("it does not start with `{`".into()));
        }
        let fields: Fields = serde_json::from_slice(&body).map_err(|e| not_json(e.to_string()))?;
        let span_of = |raw: &RawValue| {
            let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
            start..start + raw.get().len()
        };
        let model_span = fields.model.map(span_of);
        let model = match (path_model, fields.model) {
            (Some(name), _) => name.to_string(),
            (None, None) => return Err(missing("model")),
            (None, Some(raw)) => decode(raw, "model", "a string")?,
        };
        if model.is_empty() {
            return Err(
                ApiError::invalid_request("invalid_value", "'model' must not be empty.")
                    .with_param("model"),
            );
        }
        let stream = optional::<bool>(fields.stream, "stream", "a boolean")?.unwrap_or(false);
        let include_usage = match fields.stream_options {
            Some(raw) if raw.get() != "null" => {
                let options: StreamOptions = serde_json::from_str(raw.get()).map_err(|_| {
                    invalid_type("stream_options", "an object with a boolean include_usage")
                })?;
                options.include_usage.unwrap_or(false)
            }
            _ => false,
        };
        let max_tokens = match optional::<u64>(
            fields.max_completion_tokens,
            "max_completion_tokens",
            "an integer",
        )? {
            Some(n) => Some(n),
            None => optional::<u64>(fields.max_tokens, "max_tokens", "an integer")?,
        };
        match operation {
            Operation::ChatCompletions => match fields.messages {
                None => return Err(missing("messages")),
                Some(m) if !m.get().starts_with('[') => {
                    return Err(invalid_type("messages", "an array"))
                }
                Some(_) => {}
            },
            Operation::Embeddings if fields.input.is_none() => return Err(missing("input")),
            Operation::Embeddings => {}
        }
        Ok(LlmRequest {
            operation,
            body,
            model,
            model_span,
            stream,
            include_usage,
            max_tokens,
        })
    }

    /// The body with `model` set to `target_model`; every other byte kept.
    pub fn body_with_model(&self, target_model: &str) -> Bytes {
        let quoted = quoted(target_model);
        let mut out = BytesMut::with_capacity(self.body.len() + quoted.len() + 10);
        match &self.model_span {
            Some(span) if self.body[span.clone()] == *quoted.as_bytes() => {
                return self.body.clone()
            }
            Some(span) => {
                out.extend_from_slice(&self.body[..span.start]);
                out.extend_from_slice(quoted.as_bytes());
                out.extend_from_slice(&self.body[span.end..]);
            }
            None => {
                // `parse` checked that the body is an object: insert after its `{`.
                let open = self.body.iter().position(|b| *b == b'{').unwrap_or(0);
                let empty = self.body[open + 1..]
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    == Some(&b'}');
                out.extend_from_slice(&self.body[..=open]);
                out.extend_from_slice(b"\"model\":");
                out.extend_from_slice(quoted.as_bytes());
                if !empty {
                    out.extend_from_slice(b",");
                }
                out.extend_from_slice(&self.body[open + 1..]);
            }
        }
        out.freeze()
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::invalid_request(
        "missing_field",
        format!("Missing required parameter: '{field}'."),
    )
    .with_param(field)
}

fn invalid_type(field: &str, expected: &str) -> ApiError {
    ApiError::invalid_request(
        "invalid_type",
        format!("Invalid type for '{field}': expected {expected}."),
    )
    .with_param(field)
}

fn decode<T: for<'de> Deserialize<'de>>(
    raw: &RawValue,
    field: &str,
    expected: &str,
) -> Result<T, ApiError> {
    serde_json::from_str(raw.get()).map_err(|_| invalid_type(field, expected))
}

fn optional<T: for<'de> Deserialize<'de>>(
    raw: Option<&RawValue>,
    field: &str,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => decode(r, field, expected).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<LlmRequest, ApiError> {
        LlmRequest::parse(Operation::ChatCompletions, Bytes::from(body.to_string()))
    }

    #[test]
    fn splices_the_model_and_keeps_every_other_byte() {
        let body = r#"{"z_unknown": {"a":1.50e3}, "model" : "gpt-4o",  "messages":[{"role":"user","content":"h\u00e9"}],"stream":true}"#;
        let req = chat(body).unwrap();
        assert_eq!(req.model, "gpt-4o");
        assert!(req.stream);
        let out = req.body_with_model("gpt-4o-2024-08-06");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            body.replace("\"gpt-4o\"", "\"gpt-4o-2024-08-06\"")
        );
    }

    #[test]
    fn escapes_in_model_names_are_decoded_and_encoded() {
        let req = chat(r#"{"model":"a\"b","messages":[]}"#).unwrap();
        assert_eq!(req.model, "a\"b");
        assert_eq!(
            &req.body_with_model("x\"y")[..],
            br#"{"model":"x\"y","messages":[]}"#
        );
    }

    #[test]
    fn reads_token_limits_and_usage_option() {
        let req = chat(r#"{"model":"m","messages":[],"max_tokens":5,"max_completion_tokens":7,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(req.max_tokens, Some(7));
        assert!(req.include_usage);
        let req = chat(r#"{"model":"m","messages":[],"max_tokens":5,"stream":null}"#).unwrap();
        assert_eq!(req.max_tokens, Some(5));
        assert!(!req.stream);
    }

    #[test]
    fn a_model_named_in_the_path_replaces_or_joins_the_body() {
        let op = Operation::ChatCompletions;
        let req =
            LlmRequest::parse_for_model(op, Bytes::from_static(br#" { "messages":[] }"#), "m1")
                .unwrap();
        assert_eq!(req.model, "m1");
        assert_eq!(
            &req.body_with_model("dep")[..],
            br#" {"model":"dep", "messages":[] }"#
        );
        let req = LlmRequest::parse_for_model(
            op,
            Bytes::from_static(br#"{"model":7,"messages":[]}"#),
            "m1",
        )
        .unwrap();
        assert_eq!(req.model, "m1");
        assert_eq!(
            &req.body_with_model("dep")[..],
            br#"{"model":"dep","messages":[]}"#
        );
        let req = LlmRequest::parse_for_model(
            Operation::Embeddings,
            Bytes::from_static(br#"{"input":"x"}"#),
            "e",
        )
        .unwrap();
        assert_eq!(
            &req.body_with_model("e")[..],
            br#"{"model":"e","input":"x"}"#
        );
    }

    #[test]
    fn refuses_bad_bodies_with_the_right_code() {
        let code = |b: &str| chat(b).unwrap_err().code.unwrap().to_string();
        assert_eq!(code("not json"), "invalid_json");
        assert_eq!(code("[1,2]"), "invalid_json");
        assert_eq!(code(r#"{"messages":[]}"#), "missing_field");
        assert_eq!(code(r#"{"model":5,"messages":[]}"#), "invalid_type");
        assert_eq!(code(r#"{"model":"m"}"#), "missing_field");
        assert_eq!(code(r#"{"model":"m","messages":"hi"}"#), "invalid_type");
        assert_eq!(
            code(r#"{"model":"m","messages":[],"stream":"yes"}"#),
            "invalid_type"
        );
        assert_eq!(
            code(r#"{"model":"m","model":"n","messages":[]}"#),
            "invalid_json"
        );
        let e = LlmRequest::parse(
            Operation::Embeddings,
            Bytes::from_static(br#"{"model":"m"}"#),
        );
        assert_eq!(e.unwrap_err().param.as_deref(), Some("input"));
    }
}
