//! The errors the gateway answers itself, in OpenAI's envelope.
//!
//! Every status the gateway produces on its own goes through [`ApiError`], so the
//! table in DESIGN.md §2 lives in one place: the constructors below are that table.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

/// One error answer: HTTP status plus the four keys of OpenAI's `error` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: String,
    // Boxed strings keep `ApiError` small: it is the error type of many `Result`s.
    pub code: Option<Box<str>>,
    pub param: Option<Box<str>>,
    pub message: String,
    /// Seconds and milliseconds to wait, for 429 answers (`retry-after`, `retry-after-ms`).
    pub retry_after_ms: Option<u64>,
    /// An upstream's `innererror` object as JSON text (Azure's content-filter
    /// verdict), sent as `error.innererror` next to the four keys.
    pub inner_error: Option<Box<str>>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    innererror: Option<&'a RawValue>,
}

impl ApiError {
    fn new(status: u16, kind: &str, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.to_string(),
            code: Some(code.into()),
            param: None,
            message: message.into(),
            retry_after_ms: None,
            inner_error: None,
        }
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 404 for a path the gateway does not serve.
    pub fn unknown_path(path: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            "not_found",
            format!("Unknown request URL: {path}."),
        )
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            format!("Method {method} is not allowed for {path}."),
        )
    }

    /// 401: no key; `how` says where the endpoint takes it.
    pub fn missing_api_key(how: &str) -> Self {
        Self::new(
            401,
            "invalid_request_error",
            "invalid_api_key",
            format!("You didn't provide an API key. Send it as {how}."),
        )
    }

    /// 401: a key the gateway does not know. The key is never echoed.
    pub fn invalid_api_key() -> Self {
        Self::new(
            401,
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided.",
        )
    }

    /// 413: the body is larger than `max_request_bytes`.
    pub fn request_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("The request body exceeds the gateway's limit of {limit} bytes."),
        )
    }

    /// 400 for a malformed request.
    pub fn invalid_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message)
    }

    /// 400: an Azure-style request without `?api-version=`, which Azure requires.
    pub fn missing_api_version() -> Self {
        Self::invalid_request(
            "missing_field",
            "Missing required query parameter: 'api-version' (for example ?api-version=2024-10-21).",
        )
        .with_param("api-version")
    }

    /// 404 for a model the gateway does not serve (or that the key may not see).
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_param("model")
    }

    /// 403: the key's allow-list excludes the model.
    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            403,
            "permission_error",
            "model_not_allowed",
            format!("This API key is not allowed to use the model `{model}`."),
        )
        .with_param("model")
    }

    /// 502: the last upstream try failed (connection, protocol or 5xx).
    pub fn upstream_error(detail: &str) -> Self {
        Self::new(
            502,
            "server_error",
            "upstream_error",
            format!("The upstream provider failed: {detail}."),
        )
    }

    /// 502: the upstream refused the gateway's own provider credential (401/403).
    pub fn upstream_auth_failed(provider: &str) -> Self {
        Self::new(
            502,
            "server_error",
            "upstream_auth_failed",
            format!("The upstream provider `{provider}` refused the gateway's credential."),
        )
    }

    /// 502: the upstream does not know the configured model or deployment (404).
    pub fn upstream_model_not_found(provider: &str) -> Self {
        Self::new(
            502,
            "server_error",
            "upstream_model_not_found",
            format!(
                "The upstream provider `{provider}` does not know the model configured for this target."
            ),
        )
    }

    /// 504: the last try timed out, or `timeouts.total` ran out.
    pub fn upstream_timeout(what: &str) -> Self {
        Self::new(
            504,
            "server_error",
            "upstream_timeout",
            format!("The upstream provider did not answer in time ({what})."),
        )
    }

    /// 429: the key's own limit (`kind` is `requests` or `tokens`); it fits again
    /// after `retry_after_ms`.
    pub fn key_rate_limited(kind: &str, message: String, retry_after_ms: u64) -> Self {
        let mut e = Self::new(429, kind, "rate_limit_exceeded", message);
        e.retry_after_ms = Some(retry_after_ms);
        e
    }

    /// 429: the request's token estimate exceeds the key's whole per-minute budget.
    /// No retry-after: no wait would help.
    pub fn never_fits(message: String) -> Self {
        Self::new(429, "tokens", "rate_limit_exceeded", message)
    }

    /// 429 because every upstream tried answered 429.
    pub fn upstream_rate_limited(kind: &str, retry_after_ms: u64) -> Self {
        let mut e = Self::new(
            429,
            kind,
            "rate_limit_exceeded",
            "The upstream provider is rate limiting requests; retry later.",
        );
        e.retry_after_ms = Some(retry_after_ms);
        e
    }

    /// 429 because the upstream account has no quota left; not worth retrying.
    pub fn upstream_quota_exhausted() -> Self {
        Self::new(
            429,
            "insufficient_quota",
            "insufficient_quota",
            "The upstream provider account has exhausted its quota.",
        )
    }

    /// 500 for a fault inside the gateway; the detail goes to the log, not the client.
    /// 503: SIGTERM began the drain; another instance (or this one's
    /// successor) takes the request.
    pub fn shutting_down() -> Self {
        Self::new(
            503,
            "server_error",
            "shutting_down",
            "The gateway is shutting down; retry the request.",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            500,
            "server_error",
            "internal_error",
            "The gateway failed to process the request.",
        )
    }

    /// The envelope as JSON bytes: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> Bytes {
        self.render(&self.message)
    }

    /// The envelope of an answer to request `request_id`: its message names the
    /// id, so a user's bug report leads straight to the access-log line.
    pub fn body_for(&self, request_id: &str) -> Bytes {
        self.render(&format!("{} (request id: {request_id})", self.message))
    }

    /// [`Self::body`] as one SSE event, for errors after a stream's header went out.
    pub fn sse_event(&self) -> Bytes {
        sse_data(&self.body())
    }

    /// [`Self::body_for`] as one SSE event.
    pub fn sse_event_for(&self, request_id: &str) -> Bytes {
        sse_data(&self.body_for(request_id))
    }

    fn render(&self, message: &str) -> Bytes {
        let envelope = Envelope {
            error: Body {
                message,
                kind: &self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
                innererror: self
                    .inner_error
                    .as_deref()
                    .and_then(|text| serde_json::from_str::<&RawValue>(text).ok()),
            },
        };
        Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
    }
}

/// `payload` as one SSE `data:` event.
fn sse_data(payload: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(payload.len() + 8);
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(payload);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_all_four_keys_even_when_null() {
        let e = ApiError::invalid_api_key();
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        let obj = v["error"].as_object().unwrap();
        let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["code", "message", "param", "type"]);
        assert!(obj["param"].is_null());
        assert_eq!(obj["code"], "invalid_api_key");
        assert_eq!(obj["type"], "invalid_request_error");
    }

    #[test]
    fn an_answer_to_a_request_names_its_id() {
        let e = ApiError::model_not_found("m");
        let v: serde_json::Value = serde_json::from_slice(&e.body_for("req-7")).unwrap();
        assert_eq!(
            v["error"]["message"],
            "The model `m` does not exist or you do not have access to it. (request id: req-7)"
        );
        assert_eq!(v["error"]["code"], "model_not_found");
        let event = e.sse_event_for("req-7");
        assert!(event.starts_with(b"data: {\"error\":{"));
        assert!(event.ends_with(b"(request id: req-7)\",\"type\":\"invalid_request_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}\n\n"));
    }

    #[test]
    fn sse_event_wraps_the_envelope() {
        let e = ApiError::upstream_error("connection reset");
        let event = e.sse_event();
        assert!(event.starts_with(b"data: {\"error\":{"));
        assert!(event.ends_with(b"}}\n\n"));
    }
}
