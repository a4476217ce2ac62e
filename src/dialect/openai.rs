//! The OpenAI dialect: OpenAI-compatible upstreams (OpenAI itself, local servers).
//!
//! Requests pass through with only `model` replaced (see `llm_request.rs`); answers
//! pass through unchanged, but stream events are parsed so the gateway knows when
//! content starts, what usage was reported and whether the stream ended cleanly.
//! Stream chunks that carry no answer and no usage (Azure's filter annotations,
//! also sent by Azure-backed "OpenAI-compatible" servers) are dropped.

use bytes::Bytes;
use pingora::http::RequestHeader;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error_envelope;
use super::sse::SseParser;
use super::{
    build_failed, get, json_post, ClientEvent, Dialect, HealthProbe, ResponseTranslator,
    UpstreamFault, UpstreamRequest, WholeAnswer,
};
use crate::config::{ProviderKind, Target};
use crate::errors::ApiError;
use crate::llm_request::{LlmRequest, Operation};
use crate::record::Usage;

/// The OpenAI wire format.
pub struct OpenAi;

impl Dialect for OpenAi {
    fn encode(
        &self,
        request: &LlmRequest,
        target: &Target,
        request_id: &str,
    ) -> Result<UpstreamRequest, ApiError> {
        let ProviderKind::OpenAi { base_url, api_key } = &target.provider.kind else {
            return Err(ApiError::internal());
        };
        let path = match request.operation {
            Operation::ChatCompletions => "/chat/completions",
            Operation::Embeddings => "/embeddings",
        };
        let body = request.upstream_body(&target.model, true);
        let build = || -> pingora::Result<RequestHeader> {
            let mut h = json_post(base_url, path, body.len(), request, request_id)?;
            if let Some(key) = api_key {
                h.insert_header("authorization", format!("Bearer {}", key.expose()))?;
            }
            Ok(h)
        };
        let header = build().map_err(|e| build_failed(target, e))?;
        Ok(UpstreamRequest { header, body })
    }

    fn translator(
        &self,
        request: &LlmRequest,
        _target: &Target,
        _request_id: &str,
    ) -> Box<dyn ResponseTranslator> {
        Box::new(Passthrough::for_request(request))
    }

    fn classify(&self, status: u16, _headers: &http::HeaderMap, body: &[u8]) -> UpstreamFault {
        error_envelope::classify(status, body)
    }

    fn health_probe(&self, target: &Target) -> Result<HealthProbe, ApiError> {
        let ProviderKind::OpenAi { base_url, api_key } = &target.provider.kind else {
            return Err(ApiError::internal());
        };
        let build = || -> pingora::Result<RequestHeader> {
            let mut h = get(base_url, "/models")?;
            if let Some(key) = api_key {
                h.insert_header("authorization", format!("Bearer {}", key.expose()))?;
            }
            Ok(h)
        };
        build()
            .map(|h| HealthProbe::Request(Box::new(h)))
            .map_err(|e| build_failed(target, e))
    }
}

#[derive(Deserialize)]
struct UsageView {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl From<UsageView> for Usage {
    fn from(u: UsageView) -> Usage {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

#[derive(Deserialize)]
struct BodyView {
    usage: Option<UsageView>,
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChoiceView<'a>>,
    usage: Option<UsageView>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(borrow)]
    delta: Option<DeltaView<'a>>,
    #[serde(borrow)]
    finish_reason: Option<&'a RawValue>,
}

impl ChoiceView<'_> {
    /// A delta or a finish reason: what app code reads from `choices[0]`. Azure's
    /// filter annotations carry neither.
    fn is_answer(&self) -> bool {
        self.delta.is_some() || self.finish_reason.is_some_and(|r| r.get() != "null")
    }
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_calls: Option<&'a RawValue>,
    #[serde(borrow)]
    function_call: Option<&'a RawValue>,
    #[serde(borrow)]
    refusal: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolCallView<'a> {
    #[serde(borrow)]
    function: Option<FunctionView<'a>>,
}

#[derive(Deserialize)]
struct FunctionView<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

impl FunctionView<'_> {
    fn text_len(&self) -> u64 {
        text_len(self.name) + text_len(self.arguments)
    }
}

fn is_content(field: Option<&RawValue>) -> bool {
    field.is_some_and(|v| !matches!(v.get(), "null" | "\"\"" | "[]"))
}

/// The characters of a JSON string value (0 for anything else).
fn text_len(field: Option<&RawValue>) -> u64 {
    field
        .and_then(|raw| serde_json::from_str::<std::borrow::Cow<str>>(raw.get()).ok())
        .map_or(0, |text| text.chars().count() as u64)
}

impl DeltaView<'_> {
    fn has_content(&self) -> bool {
        is_content(self.content)
            || is_content(self.tool_calls)
            || is_content(self.function_call)
            || is_content(self.refusal)
    }

    /// Characters of generated text in this delta: content, refusal, and the
    /// names and arguments of tool calls.
    fn text_len(&self) -> u64 {
        let tool_calls = self
            .tool_calls
            .and_then(|raw| serde_json::from_str::<Vec<ToolCallView>>(raw.get()).ok())
            .unwrap_or_default()
            .iter()
            .filter_map(|call| call.function.as_ref())
            .map(FunctionView::text_len)
            .sum::<u64>();
        let function_call = self
            .function_call
            .and_then(|raw| serde_json::from_str::<FunctionView>(raw.get()).ok())
            .map_or(0, |f| f.text_len());
        text_len(self.content) + text_len(self.refusal) + tool_calls + function_call
    }
}

/// OpenAI to OpenAI: the bytes stay, the events are understood.
#[derive(Default)]
pub struct Passthrough {
    sse: SseParser,
    usage: Option<Usage>,
    done: bool,
    data: Vec<Vec<u8>>,
    /// The usage-only chunk is the gateway's own request (see
    /// `LlmRequest::asks_upstream_usage`), not the client's: read it, drop it.
    drop_usage_chunk: bool,
    /// Characters of generated text streamed so far.
    output_chars: u64,
}

impl Passthrough {
    /// A translator for the answer to `request`.
    pub fn for_request(request: &LlmRequest) -> Passthrough {
        Passthrough {
            drop_usage_chunk: request.asks_upstream_usage(),
            ..Passthrough::default()
        }
    }
}

impl ResponseTranslator for Passthrough {
    fn whole(&mut self, body: Bytes) -> Result<WholeAnswer, String> {
        let view: BodyView = serde_json::from_slice(&body)
            .map_err(|e| format!("the upstream answer is not JSON: {e}"))?;
        self.usage = view.usage.map(Usage::from);
        Ok(WholeAnswer {
            body,
            usage: self.usage,
        })
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Vec<ClientEvent>) -> Result<(), String> {
        self.sse.push(chunk, &mut self.data)?;
        for data in self.data.drain(..) {
            if self.done {
                return Err("the upstream sent events after [DONE]".into());
            }
            if data.as_slice() == b"[DONE]" {
                self.done = true;
                out.push(ClientEvent {
                    bytes: ClientEvent::data(&data),
                    content: false,
                    error: false,
                    done: true,
                    fault: None,
                });
                continue;
            }
            let view: ChunkView = serde_json::from_slice(&data)
                .map_err(|e| format!("the upstream sent an event that is not JSON: {e}"))?;
            let has_usage = view.usage.is_some();
            if let Some(usage) = view.usage {
                self.usage = Some(usage.into());
            }
            let answers = view.choices.iter().any(ChoiceView::is_answer);
            if (!has_usage || self.drop_usage_chunk) && view.error.is_none() && !answers {
                // Azure's prompt-filter and async-filter annotations: no choice an
                // app could read and no usage. Dropped, so `chunk.choices[0].delta`
                // never fails in app code (DESIGN.md §2). So is the usage chunk
                // the client did not ask for.
                continue;
            }
            let deltas = || view.choices.iter().filter_map(|c| c.delta.as_ref());
            let content = deltas().any(DeltaView::has_content);
            if content {
                self.output_chars += deltas().map(DeltaView::text_len).sum::<u64>();
            }
            let fault = view
                .error
                .is_some()
                .then(|| error_envelope::classify_event(&data));
            out.push(ClientEvent {
                bytes: ClientEvent::data(&data),
                content,
                error: fault.is_some(),
                done: false,
                fault,
            });
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<ClientEvent>) -> Result<(), String> {
        if self.sse.has_partial() {
            return Err("the upstream stream ended inside an event".into());
        }
        if !self.done {
            return Err("the upstream stream ended without [DONE]".into());
        }
        Ok(())
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn output_chars(&self) -> u64 {
        self.output_chars
    }
}

#[cfg(test)]
mod tests;
