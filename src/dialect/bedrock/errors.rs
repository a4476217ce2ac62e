//! Bedrock's errors — HTTP error answers and stream exception frames — mapped as
//! `PROVIDERS.md` §4.4 decides.
//!
//! An HTTP error names its exception in the `x-amzn-ErrorType` header
//! (`ValidationException:http://internal.amazon.com/...`), else in the body's
//! `code` or `__type` (`com.amazon.coral.service#UnknownOperationException`); a
//! stream exception frame names it in `:exception-type`, in camelCase. Both are
//! reduced to the bare name and compared without regard to the first letter's case.

use serde::Deserialize;

use super::super::UpstreamFault;
use crate::errors::ApiError;

/// A Bedrock error: which exception, and what it said.
#[derive(Debug, PartialEq, Eq)]
pub struct BedrockError {
    /// The exception's bare name (`ValidationException`), or empty when unnamed.
    pub name: String,
    /// What Bedrock said, verbatim.
    pub message: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(alias = "Message", alias = "errorMessage")]
    message: Option<String>,
    code: Option<String>,
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(rename = "Output")]
    output: Option<Box<ErrorBody>>,
}

/// `ValidationException:http://...` or `namespace#Name` → `Name`.
fn bare_name(raw: &str) -> &str {
    let name = raw.split(':').next().unwrap_or(raw);
    name.rsplit('#').next().unwrap_or(name).trim()
}

impl BedrockError {
    /// Reads an HTTP error answer (`error_type`: the `x-amzn-ErrorType` header).
    pub fn from_http(error_type: Option<&str>, body: &[u8]) -> BedrockError {
        let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let nested = parsed.output.as_deref();
        let name = error_type
            .or(parsed.code.as_deref())
            .or(parsed.kind.as_deref())
            .or(nested.and_then(|o| o.kind.as_deref()))
            .map(bare_name)
            .unwrap_or_default()
            .to_string();
        let message = parsed
            .message
            .or_else(|| nested.and_then(|o| o.message.clone()))
            .unwrap_or_default();
        BedrockError { name, message }
    }

    /// Whether this is the exception `name` (HTTP spells it `ThrottlingException`,
    /// stream frames `throttlingException`).
    fn is(&self, name: &str) -> bool {
        let mut mine = self.name.chars();
        let mut theirs = name.chars();
        match (mine.next(), theirs.next()) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(&b) && mine.eq(theirs),
            _ => false,
        }
    }

    fn is_any(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.is(n))
    }

    /// `name: message` for the client, or whichever of the two there is.
    fn detail(&self) -> String {
        match (self.name.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{}: {}", self.name, self.message),
            (false, true) => self.name.clone(),
            (true, false) => self.message.clone(),
            (true, true) => "no detail given".into(),
        }
    }

    /// What this error means, given the HTTP `status` it came with (a stream
    /// exception passes the status its exception is modelled with).
    pub fn fault(&self, status: u16) -> UpstreamFault {
        if self.is_any(&["ThrottlingException", "ModelNotReadyException"]) {
            return UpstreamFault::RateLimited { kind: "requests" };
        }
        if self.is_any(&["ValidationException", "ConflictException"]) {
            return UpstreamFault::Client(self.client_error(400));
        }
        if self.is("ServiceQuotaExceededException") {
            // A per-model service quota: another target may still have room.
            return UpstreamFault::QuotaExhausted { retryable: true };
        }
        if self.is_any(&[
            "AccessDeniedException",
            "InvalidSignatureException",
            "IncompleteSignatureException",
            "UnrecognizedClientException",
            "ExpiredTokenException",
            "MissingAuthenticationTokenException",
        ]) {
            return UpstreamFault::AuthRefused {
                said: self.detail(),
            };
        }
        if self.is_any(&["ResourceNotFoundException", "UnknownOperationException"]) {
            return UpstreamFault::ModelNotFound {
                said: self.detail(),
            };
        }
        if self.is("ModelTimeoutException") {
            return UpstreamFault::Timeout;
        }
        if self.is_any(&[
            "ModelErrorException",
            "ModelStreamErrorException",
            "InternalServerException",
            "ServiceUnavailableException",
        ]) {
            return UpstreamFault::Server {
                detail: self.detail(),
            };
        }
        match status {
            429 => UpstreamFault::RateLimited { kind: "requests" },
            401 | 403 => UpstreamFault::AuthRefused {
                said: self.detail(),
            },
            404 => UpstreamFault::ModelNotFound {
                said: self.detail(),
            },
            408 => UpstreamFault::Timeout,
            400..=499 => UpstreamFault::Client(self.client_error(status)),
            _ => UpstreamFault::Server {
                detail: self.detail(),
            },
        }
    }

    /// The client's own fault (a `ValidationException` and the like), in OpenAI's
    /// envelope with Bedrock's status and words.
    fn client_error(&self, status: u16) -> ApiError {
        let message = if self.message.is_empty() {
            format!("Bedrock refused the request ({}).", self.detail())
        } else {
            self.message.clone()
        };
        let code = if is_context_overflow(&self.message) {
            "context_length_exceeded"
        } else {
            "invalid_request"
        };
        let mut error = ApiError::invalid_request(code, message);
        error.status = status;
        error
    }

    /// The error event a stream exception frame becomes once the stream has
    /// committed, classed like the HTTP error of the same name. A refusal's own
    /// words stay out of it: they are for the operator's log.
    pub fn stream_error(&self) -> ApiError {
        match self.fault(500) {
            UpstreamFault::RateLimited { kind } => ApiError::upstream_rate_limited(kind, 1000),
            UpstreamFault::QuotaExhausted { .. } => ApiError::upstream_quota_exhausted(),
            UpstreamFault::Timeout => ApiError::upstream_timeout("the model timed out"),
            UpstreamFault::Client(error) => error,
            UpstreamFault::AuthRefused { .. } => {
                ApiError::upstream_error("the provider refused the gateway's credential")
            }
            UpstreamFault::ModelNotFound { .. } => {
                ApiError::upstream_error("the provider does not know the configured model")
            }
            UpstreamFault::Server { .. } => ApiError::upstream_error(&self.detail()),
        }
    }
}

/// Bedrock's ways of saying the prompt does not fit the model's context.
fn is_context_overflow(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("too long")
        || m.contains("context window")
        || m.contains("context length")
        || m.contains("too many input tokens")
}

#[cfg(test)]
mod tests;
