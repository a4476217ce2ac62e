//! Wire dialects: how a request is encoded for an upstream, and how its answer is
//! turned back into OpenAI's shape.
//!
//! One module per dialect. The attempt loop only sees the [`Dialect`] and
//! [`ResponseTranslator`] interfaces, so adding Azure or Bedrock adds a module, not a
//! branch in the pipeline.

pub mod azure;
pub mod bedrock;
pub mod error_envelope;
pub mod mock;
pub mod openai;
pub mod sse;
#[cfg(test)]
mod vectors;

use bytes::Bytes;
use pingora::http::RequestHeader;

use crate::config::{ProviderKind, Target, UpstreamUrl};
use crate::errors::ApiError;
use crate::llm_request::LlmRequest;
use crate::record::Usage;

/// The request of one upstream try.
pub struct UpstreamRequest {
    pub header: RequestHeader,
    pub body: Bytes,
}

/// A whole (non-streamed) answer in OpenAI's shape.
pub struct WholeAnswer {
    pub body: Bytes,
    pub usage: Option<Usage>,
}

/// One SSE event ready for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEvent {
    pub bytes: Bytes,
    /// Carries content (text, a tool call, a refusal): the stream can no longer fail over.
    pub content: bool,
    /// The upstream reported an error inside the stream; the stream ends after it.
    pub error: bool,
    /// The terminating `[DONE]`.
    pub done: bool,
    /// For an error event, what the upstream error means when the dialect knows:
    /// before the stream commits it is handled like the same HTTP error answer.
    pub fault: Option<UpstreamFault>,
}

impl ClientEvent {
    /// `data: <payload>\n\n`.
    pub fn data(payload: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(payload.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

/// Turns an upstream answer into OpenAI's shape, whole or event by event, and
/// reports usage as it goes.
pub trait ResponseTranslator: Send {
    /// A complete 2xx body.
    fn whole(&mut self, body: Bytes) -> Result<WholeAnswer, String>;
    /// A piece of a 2xx stream; complete events are appended to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<ClientEvent>) -> Result<(), String>;
    /// The upstream body ended; an error when the stream was cut short.
    fn finish(&mut self, out: &mut Vec<ClientEvent>) -> Result<(), String>;
    /// Usage reported so far.
    fn usage(&self) -> Option<Usage>;
    /// Characters of generated text streamed so far: what a stream that ends
    /// without usage (cut, abandoned, or from an upstream that cannot report
    /// it) is charged from.
    fn output_chars(&self) -> u64;
}

/// What an upstream's error answer means, after the dialect's own mapping: the
/// attempt loop decides on this, never on a raw status (a Bedrock 424 is a 5xx
/// here, its 400 `ServiceQuotaExceededException` a quota failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFault {
    /// Rate limited: retry elsewhere. `kind` is OpenAI's `requests` or `tokens`.
    RateLimited { kind: &'static str },
    /// The account's quota is gone: a 429 `insufficient_quota`. OpenAI's is the
    /// whole account's, not worth retrying; Bedrock's is a per-model service
    /// quota that another target may not share.
    QuotaExhausted { retryable: bool },
    /// The gateway's own credential was refused; `said` is the upstream's message,
    /// for the log only.
    AuthRefused { said: String },
    /// The configured model or deployment is unknown upstream; `said` as above.
    ModelNotFound { said: String },
    /// The upstream gave up waiting on the model.
    Timeout,
    /// A server-side failure; `detail` goes into the client's message.
    Server { detail: String },
    /// The client's own fault: answered with this error, not retried.
    Client(ApiError),
}

/// How an active health check reaches a target.
#[derive(Debug)]
pub enum HealthProbe {
    /// A request that costs nothing (a listing, never a completion) and proves
    /// the credential and the URL work.
    Request(Box<RequestHeader>),
    /// A TCP and TLS connect to the endpoint: for upstreams with no free request.
    Connect,
}

/// An upstream wire format.
pub trait Dialect: Sync {
    /// The upstream request for `request` sent to `target`.
    fn encode(
        &self,
        request: &LlmRequest,
        target: &Target,
        request_id: &str,
    ) -> Result<UpstreamRequest, ApiError>;
    /// A translator for the answer to `request` from `target`; `request_id` names
    /// answers the gateway composes itself.
    fn translator(
        &self,
        request: &LlmRequest,
        target: &Target,
        request_id: &str,
    ) -> Box<dyn ResponseTranslator>;
    /// Whether a 2xx answer with these headers is a stream.
    fn is_stream(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    }
    /// What an upstream error answer (status 400 and up) means.
    fn classify(&self, status: u16, headers: &http::HeaderMap, body: &[u8]) -> UpstreamFault;
    /// How an active health check reaches `target`.
    fn health_probe(&self, target: &Target) -> Result<HealthProbe, ApiError>;
}

/// The wire dialect of a provider; `None` for the in-process mock.
pub fn of(kind: &ProviderKind) -> Option<&'static dyn Dialect> {
    match kind {
        ProviderKind::OpenAi { .. } => Some(&openai::OpenAi),
        ProviderKind::Azure { .. } => Some(&azure::Azure),
        ProviderKind::Bedrock { .. } => Some(&bedrock::Bedrock),
        ProviderKind::Mock => None,
    }
}

/// The header of a JSON `POST` to `url` + `path` for `request`, without
/// credentials: what every HTTP dialect sends the same way, the client's trace
/// headers and the gateway's request id included.
pub fn json_post(
    url: &UpstreamUrl,
    path: &str,
    body_len: usize,
    request: &LlmRequest,
    request_id: &str,
) -> pingora::Result<RequestHeader> {
    let mut h = RequestHeader::build(
        "POST",
        format!("{}{path}", url.base_path).as_bytes(),
        Some(8),
    )?;
    h.insert_header("host", url.authority())?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body_len.to_string())?;
    h.insert_header("accept-encoding", "identity")?;
    h.insert_header(
        "accept",
        if request.stream {
            "text/event-stream"
        } else {
            "application/json"
        },
    )?;
    h.insert_header("x-request-id", request_id)?;
    request.trace.apply(&mut h)?;
    Ok(h)
}

/// The header of a `GET` to `url` + `path`, without credentials (health probes).
pub fn get(url: &UpstreamUrl, path: &str) -> pingora::Result<RequestHeader> {
    let mut h = RequestHeader::build(
        "GET",
        format!("{}{path}", url.base_path).as_bytes(),
        Some(4),
    )?;
    h.insert_header("host", url.authority())?;
    h.insert_header("accept", "application/json")?;
    h.insert_header("accept-encoding", "identity")?;
    Ok(h)
}

/// Logs why an upstream request could not be built; the client gets a 500.
pub fn build_failed(target: &Target, error: pingora::BError) -> ApiError {
    log::error!(
        "cannot build the upstream request for {}: {error}",
        target.id
    );
    ApiError::internal()
}
