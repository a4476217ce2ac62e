//! Converse response → OpenAI `chat.completion` (`PROVIDERS.md` §4.2), and the
//! pieces the stream translator shares with it: finish reasons and usage.
//!
//! Bedrock's bodies carry more than the Smithy model documents (padding, duplicate
//! cache counters, `serverToolUsage`): they are read leniently and unknown keys
//! ignored. Tool inputs are passed on as the JSON text Bedrock sent, so the
//! `arguments` string keeps the model's key order.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::record::Usage;

/// Converse's `usage` (`TokenUsage`).
#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
}

/// OpenAI's `usage`. Bedrock's `inputTokens` leaves out cached tokens (read or
/// written); OpenAI's `prompt_tokens` counts them, with the cached reads repeated
/// in `prompt_tokens_details`.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
struct PromptTokensDetails {
    cached_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_tokens: Option<u64>,
}

impl TokenUsage {
    /// As OpenAI reports it.
    pub fn openai(&self) -> OpenAiUsage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let written = self.cache_write_input_tokens.unwrap_or(0);
        let prompt = self.input_tokens + read + written;
        OpenAiUsage {
            prompt_tokens: prompt,
            completion_tokens: self.output_tokens,
            total_tokens: prompt + self.output_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: read,
                cache_write_tokens: self.cache_write_input_tokens.filter(|&n| n > 0),
            },
        }
    }

    /// The counts the gateway records (metrics, cost, the access log).
    pub fn record(&self) -> Usage {
        let usage = self.openai();
        Usage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
        }
    }
}

/// OpenAI's `finish_reason` for a Converse `stopReason`. The two `malformed_*`
/// reasons have no OpenAI equivalent: the answer did end, so `stop`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        // end_turn, stop_sequence, malformed_model_output, malformed_tool_use,
        // and whatever Bedrock adds later.
        _ => "stop",
    }
}

#[derive(Deserialize)]
struct ConverseResponse<'a> {
    #[serde(borrow)]
    output: Output<'a>,
    #[serde(rename = "stopReason", borrow)]
    stop_reason: Cow<'a, str>,
    #[serde(default)]
    usage: TokenUsage,
}

#[derive(Deserialize)]
struct Output<'a> {
    #[serde(borrow)]
    message: Option<OutputMessage<'a>>,
}

#[derive(Deserialize)]
struct OutputMessage<'a> {
    #[serde(borrow, default)]
    content: Vec<OutputBlock<'a>>,
}

/// One answer block; only the members OpenAI can express are read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputBlock<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_use: Option<OutputToolUse<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<Reasoning<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputToolUse<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    input: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reasoning<'a> {
    #[serde(borrow)]
    reasoning_text: Option<ReasoningText<'a>>,
}

#[derive(Deserialize)]
struct ReasoningText<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: OpenAiUsage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    finish_reason: &'static str,
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<String>,
    /// The model's visible reasoning, under the name OpenAI-compatible servers use.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
    refusal: Option<()>,
}

#[derive(Serialize)]
struct ToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// Who the answer is for: the chat id and the model it reports.
pub struct AnswerIdentity<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
}

/// The `chat.completion` for a Converse response body, with its usage.
pub fn chat_completion(
    body: &[u8],
    identity: &AnswerIdentity<'_>,
) -> Result<(Vec<u8>, Usage), String> {
    let response: ConverseResponse =
        serde_json::from_slice(body).map_err(|e| format!("not a Converse response: {e}"))?;
    let blocks = response
        .output
        .message
        .map(|m| m.content)
        .unwrap_or_default();
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in &blocks {
        if let Some(t) = &block.text {
            text.get_or_insert_with(String::new).push_str(t);
        }
        if let Some(r) = block
            .reasoning_content
            .as_ref()
            .and_then(|r| r.reasoning_text.as_ref())
        {
            reasoning.get_or_insert_with(String::new).push_str(&r.text);
        }
        if let Some(tool) = &block.tool_use {
            tool_calls.push(ToolCall {
                id: &tool.tool_use_id,
                kind: "function",
                function: Function {
                    name: &tool.name,
                    arguments: tool.input.get(),
                },
            });
        }
    }
    // OpenAI sends `content: null` beside tool calls, and a string otherwise.
    let content = match (text, tool_calls.is_empty()) {
        (Some(text), _) => Some(text),
        (None, true) => Some(String::new()),
        (None, false) => None,
    };
    let completion = ChatCompletion {
        id: identity.id,
        object: "chat.completion",
        created: identity.created,
        model: identity.model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                reasoning_content: reasoning,
                tool_calls,
                refusal: None,
            },
            finish_reason: finish_reason(&response.stop_reason),
            logprobs: None,
        }],
        usage: response.usage.openai(),
    };
    let bytes = serde_json::to_vec(&completion).map_err(|e| e.to_string())?;
    Ok((bytes, response.usage.record()))
}

#[cfg(test)]
mod tests;
