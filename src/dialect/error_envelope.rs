//! Reads the error bodies of OpenAI-shaped upstreams (OpenAI, Azure OpenAI,
//! compatible servers) into the gateway's [`ApiError`].
//!
//! The shapes differ in small ways that must not break the translation: Azure's
//! `type` may be `null`, its `code` may be a number or a numeric string, and it adds
//! `innererror` (spec: `inner_error`) with the content-filter verdict, which apps
//! need to tell a blocked prompt from a bad one, so it is kept.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::UpstreamFault;
use crate::errors::ApiError;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    error: Fields<'a>,
}

#[derive(Deserialize)]
struct Fields<'a> {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    param: Option<String>,
    code: Option<serde_json::Value>,
    #[serde(borrow, alias = "inner_error")]
    innererror: Option<&'a RawValue>,
}

/// The client-facing error for an upstream error answer with `status`, keeping
/// the upstream's message, code and param.
pub fn read(status: u16, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => ApiError {
            status,
            kind: error.kind.unwrap_or_else(|| "invalid_request_error".into()),
            code: error.code.and_then(code_text).map(String::into_boxed_str),
            param: error.param.map(String::into_boxed_str),
            message: error.message.unwrap_or_default(),
            retry_after_ms: None,
            inner_error: error
                .innererror
                .filter(|raw| raw.get() != "null")
                .map(|raw| raw.get().into()),
        },
        Err(_) => ApiError {
            status,
            kind: "invalid_request_error".into(),
            code: None,
            param: None,
            message: format!("The upstream provider refused the request (HTTP {status})."),
            retry_after_ms: None,
            inner_error: None,
        },
    }
}

/// What an OpenAI-shaped error answer means.
pub fn classify(status: u16, body: &[u8]) -> UpstreamFault {
    match status {
        429 if is_quota_exhausted(body) => UpstreamFault::QuotaExhausted { retryable: false },
        429 => UpstreamFault::RateLimited {
            kind: if read(429, body).kind == "tokens" {
                "tokens"
            } else {
                "requests"
            },
        },
        401 | 403 => UpstreamFault::AuthRefused {
            said: read(status, body).message,
        },
        404 => UpstreamFault::ModelNotFound {
            said: read(status, body).message,
        },
        400..=499 => UpstreamFault::Client(read(status, body)),
        _ => UpstreamFault::Server {
            detail: format!("HTTP {status}"),
        },
    }
}

/// What an error event inside an OpenAI-shaped stream means. It arrives after a
/// 200, so there is no status to go by: its code tells a throttle or an exhausted
/// quota from a server-side failure.
pub fn classify_event(data: &[u8]) -> UpstreamFault {
    let code = serde_json::from_slice::<Envelope>(data)
        .ok()
        .and_then(|e| e.error.code.and_then(code_text));
    match code.as_deref() {
        Some("rate_limit_exceeded" | "insufficient_quota") => classify(429, data),
        _ => UpstreamFault::Server {
            detail: "the stream reported an error".into(),
        },
    }
}

/// Whether an upstream 429 body says the account's quota is exhausted.
fn is_quota_exhausted(body: &[u8]) -> bool {
    serde_json::from_slice::<Envelope>(body).is_ok_and(|e| {
        e.error.kind.as_deref() == Some("insufficient_quota")
            || e.error.code.and_then(code_text).as_deref() == Some("insufficient_quota")
    })
}

/// Codes are strings in OpenAI's envelope; Azure and some servers send numbers.
fn code_text(code: serde_json::Value) -> Option<String> {
    match code {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_openai_fields() {
        let e = read(
            400,
            br#"{"error":{"message":"Invalid 'messages': empty array.","type":"invalid_request_error","param":"messages","code":"empty_array"}}"#,
        );
        assert_eq!(e.status, 400);
        assert_eq!(e.kind, "invalid_request_error");
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert_eq!(e.code.as_deref(), Some("empty_array"));
        assert_eq!(e.inner_error, None);
    }

    #[test]
    fn reads_numeric_codes_and_null_types() {
        let e = read(
            429,
            br#"{"error":{"code":429,"message":"slow down","type":null}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("429"));
        assert_eq!(e.kind, "invalid_request_error");
    }

    #[test]
    fn a_body_that_is_not_an_envelope_still_gives_a_clear_error() {
        let e = read(422, b"<html>nope</html>");
        assert_eq!(e.status, 422);
        assert!(e.message.contains("HTTP 422"));
    }

    #[test]
    fn accepts_both_spellings_of_the_inner_error() {
        let e = read(400, br#"{"error":{"code":"content_filter","message":"m","inner_error":{"code":"ResponsibleAIPolicyViolation"}}}"#);
        assert_eq!(
            e.inner_error.as_deref(),
            Some(r#"{"code":"ResponsibleAIPolicyViolation"}"#)
        );
    }

    #[test]
    fn recognises_an_exhausted_quota() {
        assert!(is_quota_exhausted(
            br#"{"error":{"type":"insufficient_quota","code":null,"message":"m"}}"#
        ));
        assert!(is_quota_exhausted(
            br#"{"error":{"type":"x","code":"insufficient_quota","message":"m"}}"#
        ));
        assert!(!is_quota_exhausted(
            br#"{"error":{"type":"requests","code":"rate_limit_exceeded","message":"m"}}"#
        ));
    }

    #[test]
    fn an_error_event_is_a_throttle_a_quota_or_a_server_failure_by_its_code() {
        let event = |code: &str| {
            format!(r#"{{"error":{{"message":"m","type":"t","param":null,"code":{code}}}}}"#)
        };
        assert_eq!(
            classify_event(event(r#""rate_limit_exceeded""#).as_bytes()),
            UpstreamFault::RateLimited { kind: "requests" }
        );
        assert_eq!(
            classify_event(event(r#""insufficient_quota""#).as_bytes()),
            UpstreamFault::QuotaExhausted { retryable: false }
        );
        for code in ["null", r#""server_error""#] {
            assert!(matches!(
                classify_event(event(code).as_bytes()),
                UpstreamFault::Server { .. }
            ));
        }
    }
}
