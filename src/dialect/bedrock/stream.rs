//! ConverseStream event frames → OpenAI `chat.completion.chunk` SSE events, sent
//! on as each frame completes (`PROVIDERS.md` §4.3).
//!
//! `messageStart` → the role chunk; text deltas → content chunks; a `toolUse`
//! block start → a tool-call chunk with its own `index` (0, 1, ... in arrival
//! order), `id` and `name`; its input fragments → argument chunks under the same
//! index; `messageStop` → the `finish_reason` chunk; `metadata` (Bedrock's last
//! event) → the usage chunk when the client asked for one, then `[DONE]`. An
//! exception frame becomes an error event and ends the stream; so does a corrupt
//! frame or a stream that ends before `metadata`: never a clean-looking end.

use std::borrow::Cow;

use aws_smithy_types::event_stream::{HeaderValue, Message};
use serde::{Deserialize, Serialize};

use super::completion::{finish_reason, AnswerIdentity, OpenAiUsage, TokenUsage};
use super::errors::BedrockError;
use super::frames::FrameReader;
use crate::dialect::ClientEvent;
use crate::record::Usage;

/// The translator's state across frames.
pub struct StreamState {
    frames: FrameReader,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// Content block index → OpenAI tool-call index, in arrival order.
    tool_blocks: Vec<u64>,
    usage: Option<Usage>,
    /// Characters of generated text (answer, reasoning, tool names and input)
    /// translated so far.
    output_chars: u64,
    /// `metadata` (the last event) or an exception came: nothing may follow.
    ended: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart<'a> {
    content_block_index: u64,
    #[serde(borrow)]
    start: Option<Start<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start<'a> {
    #[serde(borrow)]
    tool_use: Option<ToolUseStart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta<'a> {
    content_block_index: u64,
    #[serde(borrow)]
    delta: Delta<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delta<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_use: Option<ToolUseDelta<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<ReasoningDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolUseDelta<'a> {
    #[serde(borrow, default)]
    input: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ReasoningDelta<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop<'a> {
    #[serde(borrow)]
    stop_reason: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: TokenUsage,
}

/// An exception frame's payload; `modelStreamErrorException` adds what the
/// model itself reported.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ExceptionBody {
    #[serde(default, alias = "Message")]
    message: String,
    original_status_code: Option<u16>,
    original_message: Option<String>,
}

impl ExceptionBody {
    fn text(self) -> String {
        match (self.original_status_code, self.original_message) {
            (Some(status), Some(original)) => {
                format!("{} (model: {status} {original})", self.message)
            }
            (None, Some(original)) => format!("{} (model: {original})", self.message),
            _ => self.message,
        }
    }
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OpenAiUsage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: ChunkDelta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct ChunkDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallDelta<'a>>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

fn header_text<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

fn payload<'m, T: Deserialize<'m>>(message: &'m Message, event: &str) -> Result<T, String> {
    serde_json::from_slice(message.payload())
        .map_err(|e| format!("the `{event}` event is not what ConverseStream sends: {e}"))
}

impl StreamState {
    /// A translator for one stream; `include_usage`: the client asked for the
    /// usage chunk.
    pub fn new(identity: &AnswerIdentity<'_>, include_usage: bool) -> StreamState {
        StreamState {
            frames: FrameReader::default(),
            id: identity.id.to_string(),
            created: identity.created,
            model: identity.model.to_string(),
            include_usage,
            tool_blocks: Vec::new(),
            usage: None,
            output_chars: 0,
            ended: false,
        }
    }

    /// The chat id, creation time and model every chunk reports; a whole answer
    /// reports the same.
    pub fn identity(&self) -> AnswerIdentity<'_> {
        AnswerIdentity {
            id: &self.id,
            created: self.created,
            model: &self.model,
        }
    }

    /// Usage from the `metadata` event, once it came.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Characters of generated text translated so far.
    pub fn output_chars(&self) -> u64 {
        self.output_chars
    }

    /// Takes bytes as they arrive; every frame they complete becomes events in `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<ClientEvent>) -> Result<(), String> {
        self.frames.push(bytes);
        while let Some(message) = self.frames.next_message()? {
            if self.ended {
                return Err("ConverseStream sent events after its last one".into());
            }
            self.translate(&message, out)?;
        }
        Ok(())
    }

    /// The upstream body ended: fine only after `metadata`.
    pub fn finish(&mut self) -> Result<(), String> {
        if self.frames.has_partial() {
            return Err("ConverseStream ended inside an event frame".into());
        }
        if !self.ended {
            return Err("ConverseStream ended before its `metadata` event".into());
        }
        Ok(())
    }

    fn translate(&mut self, message: &Message, out: &mut Vec<ClientEvent>) -> Result<(), String> {
        match header_text(message, ":message-type") {
            Some("event") => {}
            Some("exception") => {
                let name = header_text(message, ":exception-type").unwrap_or_default();
                let body: ExceptionBody =
                    serde_json::from_slice(message.payload()).unwrap_or_default();
                return self.fail(name, &body.text(), out);
            }
            Some("error") => {
                let name = header_text(message, ":error-code").unwrap_or_default();
                let text = header_text(message, ":error-message").unwrap_or_default();
                return self.fail(name, text, out);
            }
            other => return Err(format!("unknown event-stream message type {other:?}")),
        }
        let event = header_text(message, ":event-type").unwrap_or_default();
        match event {
            "messageStart" => {
                let delta = ChunkDelta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..ChunkDelta::default()
                };
                out.push(self.event(delta, None, false)?);
            }
            "contentBlockStart" => {
                let start: BlockStart = payload(message, event)?;
                if let Some(tool) = start.start.and_then(|s| s.tool_use) {
                    self.output_chars += tool.name.chars().count() as u64;
                    let index = self.tool_blocks.len();
                    self.tool_blocks.push(start.content_block_index);
                    let call = ToolCallDelta {
                        index,
                        id: Some(&tool.tool_use_id),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(&tool.name),
                            arguments: "",
                        },
                    };
                    out.push(self.tool_event(call)?);
                }
            }
            "contentBlockDelta" => {
                let delta: BlockDelta = payload(message, event)?;
                if let Some(text) = delta.delta.text.as_deref().filter(|t| !t.is_empty()) {
                    self.output_chars += text.chars().count() as u64;
                    let delta = ChunkDelta {
                        content: Some(text),
                        ..ChunkDelta::default()
                    };
                    out.push(self.event(delta, None, true)?);
                } else if let Some(tool) = &delta.delta.tool_use {
                    let Some(index) = self
                        .tool_blocks
                        .iter()
                        .position(|&b| b == delta.content_block_index)
                    else {
                        return Err(
                            "ConverseStream sent tool input for a block it never started".into(),
                        );
                    };
                    if !tool.input.is_empty() {
                        self.output_chars += tool.input.chars().count() as u64;
                        let call = ToolCallDelta {
                            index,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: &tool.input,
                            },
                        };
                        out.push(self.tool_event(call)?);
                    }
                } else if let Some(text) = delta
                    .delta
                    .reasoning_content
                    .as_ref()
                    .and_then(|r| r.text.as_deref())
                    .filter(|t| !t.is_empty())
                {
                    self.output_chars += text.chars().count() as u64;
                    let delta = ChunkDelta {
                        reasoning_content: Some(text),
                        ..ChunkDelta::default()
                    };
                    out.push(self.event(delta, None, true)?);
                }
                // Reasoning signatures, redacted reasoning and citations have no
                // place in OpenAI's chunks.
            }
            "messageStop" => {
                let stop: MessageStop = payload(message, event)?;
                let reason = finish_reason(&stop.stop_reason);
                out.push(self.event(ChunkDelta::default(), Some(reason), false)?);
            }
            "metadata" => {
                let metadata: Metadata = payload(message, event)?;
                self.usage = Some(metadata.usage.record());
                if self.include_usage {
                    let chunk = Chunk {
                        id: &self.id,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        choices: Vec::new(),
                        usage: Some(metadata.usage.openai()),
                    };
                    out.push(plain(&chunk)?);
                }
                self.ended = true;
                out.push(ClientEvent {
                    bytes: ClientEvent::data(b"[DONE]"),
                    content: false,
                    error: false,
                    done: true,
                    fault: None,
                });
            }
            // contentBlockStop carries nothing OpenAI needs; events Bedrock adds
            // later are skipped rather than breaking the stream.
            _ => {}
        }
        Ok(())
    }

    fn fail(&mut self, name: &str, text: &str, out: &mut Vec<ClientEvent>) -> Result<(), String> {
        let error = BedrockError {
            name: name.to_string(),
            message: text.to_string(),
        };
        self.ended = true;
        out.push(ClientEvent {
            bytes: error.stream_error().sse_event(),
            content: false,
            error: true,
            done: false,
            fault: Some(error.fault(500)),
        });
        Ok(())
    }

    fn event(
        &self,
        delta: ChunkDelta<'_>,
        finish_reason: Option<&'static str>,
        content: bool,
    ) -> Result<ClientEvent, String> {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage: None,
        };
        let mut event = plain(&chunk)?;
        event.content = content;
        Ok(event)
    }

    fn tool_event(&self, call: ToolCallDelta<'_>) -> Result<ClientEvent, String> {
        let delta = ChunkDelta {
            tool_calls: vec![call],
            ..ChunkDelta::default()
        };
        self.event(delta, None, true)
    }
}

/// A chunk as an SSE event without content.
fn plain(chunk: &Chunk<'_>) -> Result<ClientEvent, String> {
    let json = serde_json::to_vec(chunk).map_err(|e| e.to_string())?;
    Ok(ClientEvent {
        bytes: ClientEvent::data(&json),
        content: false,
        error: false,
        done: false,
        fault: None,
    })
}

#[cfg(test)]
mod tests;
