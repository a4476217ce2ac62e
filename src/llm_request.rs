//! The few fields of an LLM request body the gateway needs, read without
//! re-serialising the rest.
//!
//! Only `model`, `stream`, `stream_options`, `n` and the token limits are decoded;
//! the messages and tools stay bytes (their place is kept for the token
//! estimate). `model` is replaced by splicing its byte range, so unknown fields,
//! key order, number formatting and large base64 images reach the upstream
//! exactly as the client sent them.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::errors::ApiError;
use crate::json_members::{quoted, Members};
use crate::trace_context::TraceContext;

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
    /// Where the prompt is in `body`: `messages` (chat) or `input` (embeddings),
    /// then `tools` and `functions` when there.
    prompt_spans: Vec<Range<usize>>,
    /// Where `stream_options` is in `body` (an object, or `null`).
    stream_options_span: Option<Range<usize>>,
    pub stream: bool,
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// `n`: how many choices to generate (1 when absent).
    pub choices: u64,
    /// The client's trace headers, for the upstream request.
    pub trace: TraceContext,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    /// `null` included: its span is replaced when usage is asked for.
    #[serde(borrow, default, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
    #[serde(borrow)]
    functions: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

/// A member that is there, `null` included (serde reads a `null` `Option` as
/// absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
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
        let prompt = match operation {
            Operation::ChatCompletions => match fields.messages {
                None => return Err(missing("messages")),
                Some(m) if !m.get().starts_with('[') => {
                    return Err(invalid_type("messages", "an array"))
                }
                Some(m) => m,
            },
            Operation::Embeddings => fields.input.ok_or_else(|| missing("input"))?,
        };
        let choices = optional::<u64>(fields.n, "n", "an integer")?.unwrap_or(1);
        let prompt_spans = [Some(prompt), fields.tools, fields.functions]
            .into_iter()
            .flatten()
            .map(span_of)
            .collect();
        let stream_options_span = fields.stream_options.map(span_of);
        Ok(LlmRequest {
            operation,
            body,
            model,
            model_span,
            prompt_spans,
            stream_options_span,
            stream,
            include_usage,
            max_tokens,
            choices,
            trace: TraceContext::default(),
        })
    }

    /// The parts of the prompt: `messages` of a chat completion (then its
    /// `tools` and `functions`), `input` of an embedding.
    pub fn prompt(&self) -> impl Iterator<Item = &[u8]> {
        self.prompt_spans
            .iter()
            .map(|span| &self.body[span.clone()])
    }

    /// Whether the upstream must be asked for the stream's usage although the
    /// client did not ask: a chat stream without `include_usage`. The limits need
    /// the real usage; the translator drops the usage chunk the client did not
    /// want.
    pub fn asks_upstream_usage(&self) -> bool {
        self.operation == Operation::ChatCompletions && self.stream && !self.include_usage
    }

    /// The body for an OpenAI-shaped upstream: `model` set to `target_model` and,
    /// when [`asks_upstream_usage`](Self::asks_upstream_usage) and the upstream
    /// takes `stream_options` (`stream_options_accepted`), `include_usage` turned
    /// on. Every other byte is kept.
    pub fn upstream_body(&self, target_model: &str, stream_options_accepted: bool) -> Bytes {
        let model = quoted(target_model);
        let mut replaced: Vec<(Range<usize>, String)> = Vec::with_capacity(2);
        let mut added: Vec<String> = Vec::new();
        match &self.model_span {
            Some(span) if self.body[span.clone()] == *model.as_bytes() => {}
            Some(span) => replaced.push((span.clone(), model)),
            None => added.push(format!("\"model\":{model}")),
        }
        if stream_options_accepted && self.asks_upstream_usage() {
            match &self.stream_options_span {
                Some(span) => replaced.push((span.clone(), self.options_with_usage(span))),
                None => added.push(r#""stream_options":{"include_usage":true}"#.to_string()),
            }
        }
        if replaced.is_empty() && added.is_empty() {
            return self.body.clone();
        }
        replaced.sort_by_key(|(span, _)| span.start);
        let mut out = BytesMut::with_capacity(self.body.len() + 64);
        let mut copied = 0;
        if !added.is_empty() {
            // `parse` checked that the body is an object: insert after its `{`.
            let open = self.body.iter().position(|b| *b == b'{').unwrap_or(0);
            let empty = self.body[open + 1..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                == Some(&b'}');
            out.extend_from_slice(&self.body[..=open]);
            out.extend_from_slice(added.join(",").as_bytes());
            if !empty {
                out.extend_from_slice(b",");
            }
            copied = open + 1;
        }
        for (span, value) in replaced {
            out.extend_from_slice(&self.body[copied..span.start]);
            out.extend_from_slice(value.as_bytes());
            copied = span.end;
        }
        out.extend_from_slice(&self.body[copied..]);
        out.freeze()
    }

    /// The client's `stream_options` (at `span`) with `include_usage` on: its
    /// other members kept, or the usage option alone in place of `null`.
    fn options_with_usage(&self, span: &Range<usize>) -> String {
        match Members::parse(&self.body[span.clone()]) {
            Ok(mut options) => {
                options.put_raw("include_usage", "true".into());
                options.to_json()
            }
            Err(_) => r#"{"include_usage":true}"#.to_string(),
        }
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
        let body = r#"{"z_unknown": {"a":1.50e3}, "model" : "gpt-4o",  "messages":[{"role":"user","content":"h\u00e9"}],"stream":false}"#;
        let req = chat(body).unwrap();
        assert_eq!(req.model, "gpt-4o");
        assert!(!req.stream);
        let out = req.upstream_body("gpt-4o-2024-08-06", true);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            body.replace("\"gpt-4o\"", "\"gpt-4o-2024-08-06\"")
        );
        assert_eq!(
            req.prompt().collect::<Vec<_>>(),
            [&br#"[{"role":"user","content":"h\u00e9"}]"#[..]]
        );
    }

    #[test]
    fn a_stream_asks_the_upstream_for_usage_the_client_did_not_ask_for() {
        let upstream = |body: &str| {
            let out = chat(body).unwrap().upstream_body("up", true);
            String::from_utf8(out.to_vec()).unwrap()
        };
        assert_eq!(
            upstream(r#"{"model":"m","messages":[],"stream":true}"#),
            r#"{"stream_options":{"include_usage":true},"model":"up","messages":[],"stream":true}"#
        );
        assert_eq!(
            upstream(
                r#"{"messages":[],"stream":true,"stream_options":{"x":1,"include_usage":false},"model":"m"}"#
            ),
            r#"{"messages":[],"stream":true,"stream_options":{"x":1,"include_usage":true},"model":"up"}"#
        );
        assert_eq!(
            upstream(r#"{"model":"m","stream_options":null,"messages":[],"stream":true}"#),
            r#"{"model":"up","stream_options":{"include_usage":true},"messages":[],"stream":true}"#
        );
        let asked =
            r#"{"model":"up","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
        assert_eq!(upstream(asked), asked);
        assert!(!chat(asked).unwrap().asks_upstream_usage());
        // An upstream that does not take the option is not sent it.
        let not_taken = chat(r#"{"model":"m","messages":[],"stream":true}"#)
            .unwrap()
            .upstream_body("up", false);
        assert_eq!(
            &not_taken[..],
            br#"{"model":"up","messages":[],"stream":true}"#
        );
        let op = Operation::ChatCompletions;
        let azure_shape =
            LlmRequest::parse_for_model(op, Bytes::from_static(br#"{"stream":true}"#), "m");
        assert!(azure_shape.is_err(), "messages are required");
        let azure_shape = LlmRequest::parse_for_model(
            op,
            Bytes::from_static(br#"{"messages":[],"stream":true}"#),
            "m",
        )
        .unwrap();
        assert_eq!(
            &azure_shape.upstream_body("dep", true)[..],
            br#"{"model":"dep","stream_options":{"include_usage":true},"messages":[],"stream":true}"#
        );
    }

    #[test]
    fn escapes_in_model_names_are_decoded_and_encoded() {
        let req = chat(r#"{"model":"a\"b","messages":[]}"#).unwrap();
        assert_eq!(req.model, "a\"b");
        assert_eq!(
            &req.upstream_body("x\"y", true)[..],
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
            &req.upstream_body("dep", true)[..],
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
            &req.upstream_body("dep", true)[..],
            br#"{"model":"dep","messages":[]}"#
        );
        let req = LlmRequest::parse_for_model(
            Operation::Embeddings,
            Bytes::from_static(br#"{"input":"x"}"#),
            "e",
        )
        .unwrap();
        assert_eq!(
            &req.upstream_body("e", true)[..],
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
