//! The AWS Bedrock dialect: OpenAI chat requests answered through Bedrock's
//! Converse and ConverseStream APIs (`PROVIDERS.md` §3, §4.1–4.4).
//!
//! Outbound: the body is rebuilt in Converse's shape (`converse.rs`), the model id
//! goes into the path as one percent-encoded segment, and the request is signed
//! with SigV4 last (`sigv4.rs`) — or carries a Bedrock API key. Inbound: Converse
//! JSON becomes a `chat.completion` (`completion.rs`), the binary event stream
//! becomes OpenAI's SSE chunks frame by frame (`frames.rs`, `stream.rs`), and
//! Bedrock's exceptions map onto the gateway's error classes (`errors.rs`).
//! Embeddings are not offered through Bedrock.

mod completion;
mod converse;
mod errors;
mod frames;
mod openai_request;
mod sigv4;
mod stream;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use self::completion::{chat_completion, AnswerIdentity};
use self::errors::BedrockError;
use self::openai_request::ChatRequest;
use self::sigv4::{sign_request, SigningKey, BEDROCK_SERVICE};
use self::stream::StreamState;
use super::{
    build_failed, json_post, ClientEvent, Dialect, HealthProbe, ResponseTranslator, UpstreamFault,
    UpstreamRequest, WholeAnswer,
};
use crate::config::{BedrockAuth, ProviderKind, Target};
use crate::errors::ApiError;
use crate::llm_request::{LlmRequest, Operation};
use crate::record::Usage;

/// The Bedrock Converse wire format.
pub struct Bedrock;

/// `Content-Type` of a ConverseStream answer.
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// Everything but RFC 3986's unreserved characters is encoded, so a model id or
/// ARN (`:` and `/`) stays one path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `/model/{model id}/converse` or `/converse-stream`, the id percent-encoded.
fn converse_path(model_id: &str, stream: bool) -> String {
    let operation = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    format!(
        "/model/{}/{operation}",
        utf8_percent_encode(model_id, PATH_SEGMENT)
    )
}

fn parse_chat(body: &[u8]) -> Result<ChatRequest<'_>, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request(
            "invalid_value",
            format!("The request cannot be sent to Bedrock: {e}."),
        )
    })
}

impl Dialect for Bedrock {
    fn encode(
        &self,
        request: &LlmRequest,
        target: &Target,
        request_id: &str,
    ) -> Result<UpstreamRequest, ApiError> {
        let ProviderKind::Bedrock {
            endpoint,
            region,
            auth,
        } = &target.provider.kind
        else {
            return Err(ApiError::internal());
        };
        if request.operation != Operation::ChatCompletions {
            return Err(ApiError::invalid_request(
                "unsupported_operation",
                "Bedrock targets answer chat completions only; embeddings are not offered through Bedrock.",
            ));
        }
        let chat = parse_chat(&request.body)?;
        let converse = converse::converse_request(&chat, &target.model)?;
        let body = Bytes::from(serde_json::to_vec(&converse).map_err(|e| {
            log::error!("cannot serialise a Converse request: {e}");
            ApiError::internal()
        })?);
        let path = converse_path(&target.model, request.stream);
        let mut header = json_post(endpoint, &path, body.len(), request, request_id)
            .map_err(|e| build_failed(target, e))?;
        if request.stream {
            header
                .insert_header("accept", EVENT_STREAM)
                .map_err(|e| build_failed(target, e))?;
        }
        match auth {
            BedrockAuth::ApiKey(key) => header
                .insert_header("authorization", format!("Bearer {}", key.expose()))
                .map_err(|e| build_failed(target, e))?,
            BedrockAuth::SigV4 {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let key = SigningKey {
                    access_key_id: access_key_id.expose(),
                    secret_access_key: secret_access_key.expose(),
                    session_token: session_token.as_ref().map(|t| t.expose()),
                    region,
                    service: BEDROCK_SERVICE,
                };
                // Last: nothing signed may change after this.
                sign_request(
                    &mut header,
                    &body,
                    &key,
                    SystemTime::now(),
                    Default::default(),
                )
                .map_err(|e| {
                    log::error!("cannot sign the request for {}: {e}", target.id);
                    ApiError::internal()
                })?;
            }
        }
        Ok(UpstreamRequest { header, body })
    }

    fn translator(
        &self,
        request: &LlmRequest,
        target: &Target,
        request_id: &str,
    ) -> Box<dyn ResponseTranslator> {
        let identity = AnswerIdentity {
            id: &format!("chatcmpl-{request_id}"),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: &target.model,
        };
        Box::new(ConverseTranslator {
            stream: StreamState::new(&identity, request.include_usage),
        })
    }

    fn is_stream(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(EVENT_STREAM.as_bytes()))
    }

    fn classify(&self, status: u16, headers: &http::HeaderMap, body: &[u8]) -> UpstreamFault {
        let error_type = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok());
        BedrockError::from_http(error_type, body).fault(status)
    }

    /// Bedrock has no free request (listing models is another service, with other
    /// permissions): a TCP and TLS connect to the endpoint shows it is reachable.
    fn health_probe(&self, _target: &Target) -> Result<HealthProbe, ApiError> {
        Ok(HealthProbe::Connect)
    }
}

/// Converse answers, whole or streamed, in OpenAI's shape; the stream state
/// also holds the answer's identity.
struct ConverseTranslator {
    stream: StreamState,
}

impl ResponseTranslator for ConverseTranslator {
    fn whole(&mut self, body: Bytes) -> Result<WholeAnswer, String> {
        let (json, usage) = chat_completion(&body, &self.stream.identity())?;
        Ok(WholeAnswer {
            body: Bytes::from(json),
            usage: Some(usage),
        })
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Vec<ClientEvent>) -> Result<(), String> {
        self.stream.feed(chunk, out)
    }

    fn finish(&mut self, _out: &mut Vec<ClientEvent>) -> Result<(), String> {
        self.stream.finish()
    }

    fn usage(&self) -> Option<Usage> {
        self.stream.usage()
    }

    fn output_chars(&self) -> u64 {
        self.stream.output_chars()
    }
}

#[cfg(test)]
mod tests;
