//! OpenAI chat request → Bedrock Converse request body (`PROVIDERS.md` §4.1).
//!
//! Converse wants a strictly alternating `user`/`assistant` conversation with the
//! system prompt apart, tool calls and results as content blocks, and sampling
//! settings in `inferenceConfig`. What has no Converse equivalent is either
//! refused with a 400 that says so (the client would otherwise get a different
//! answer than it asked for: `n > 1`, logprobs, audio, web search, web image URLs,
//! `json_object`) or deliberately ignored (sampling hints that do not change the
//! answer's shape: `seed`, `logit_bias`, penalties, `user`, `metadata`, `store`,
//! `service_tier`, `parallel_tool_calls`, `prediction`, tool `strict`). The README
//! lists both.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::openai_request::{ChatRequest, Content, Message, Part, ToolChoice};
use crate::errors::ApiError;

/// Converse's `inferenceConfig.temperature` range is 0..1; OpenAI's is 0..2.
const MAX_TEMPERATURE: f64 = 1.0;
/// The schema of a function declared without `parameters`.
const EMPTY_OBJECT_SCHEMA: &str = r#"{"type":"object","properties":{}}"#;

/// The Converse request body (the model id goes in the path).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest<'a> {
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<TextBlock<'a>>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<OutputConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_model_request_fields: Option<ReasoningEffort<'a>>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
struct TextBlock<'a> {
    text: &'a str,
}

/// One Converse content block: a union serialised as `{"<member>": ...}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'a> {
    Text(&'a str),
    Image(Image<'a>),
    ToolUse(ToolUse<'a>),
    ToolResult(ToolResult<'a>),
}

#[derive(Serialize)]
struct Image<'a> {
    format: &'static str,
    source: ImageSource<'a>,
}

#[derive(Serialize)]
struct ImageSource<'a> {
    /// Base64 text, copied as it came in the data URL.
    bytes: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    tool_use_id: &'a str,
    name: &'a str,
    input: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult<'a> {
    tool_use_id: &'a str,
    content: Vec<TextBlock<'a>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
}

impl InferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    tools: Vec<ToolEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ConverseToolChoice<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolEntry<'a> {
    tool_spec: ToolSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: InputSchema<'a>,
}

#[derive(Serialize)]
struct InputSchema<'a> {
    json: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ConverseToolChoice<'a> {
    Auto(Empty),
    Any(Empty),
    Tool(NamedTool<'a>),
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct NamedTool<'a> {
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutputConfig<'a> {
    text_format: TextFormat<'a>,
}

#[derive(Serialize)]
struct TextFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    structure: Structure<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Structure<'a> {
    json_schema: ConverseJsonSchema<'a>,
}

#[derive(Serialize)]
struct ConverseJsonSchema<'a> {
    /// Converse takes the schema as a JSON text inside a string.
    schema: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// `additionalModelRequestFields` for OpenAI's open-weight models on Bedrock,
/// which take `reasoning_effort` as OpenAI does.
#[derive(Serialize)]
struct ReasoningEffort<'a> {
    reasoning_effort: &'a str,
}

fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request("unsupported_parameter", message).with_param(param)
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request("invalid_value", message).with_param(param)
}

/// Maps `request` for the Bedrock model `model_id`.
pub fn converse_request<'a>(
    request: &'a ChatRequest<'_>,
    model_id: &str,
) -> Result<ConverseRequest<'a>, ApiError> {
    refuse_what_converse_cannot_do(request)?;
    let mut conversation = Conversation::new(model_id);
    for (i, message) in request.messages.iter().enumerate() {
        conversation.add(message, i)?;
    }
    let tool_config = tool_config(request, &conversation)?;
    let system = std::mem::take(&mut conversation.system);
    Ok(ConverseRequest {
        messages: conversation.into_turns(),
        system,
        inference_config: inference_config(request)?,
        tool_config,
        output_config: output_config(request, model_id)?,
        additional_model_request_fields: reasoning(request, model_id)?,
    })
}

fn refuse_what_converse_cannot_do(request: &ChatRequest<'_>) -> Result<(), ApiError> {
    if request.n.is_some_and(|n| n != 1) {
        return Err(unsupported(
            "n",
            "Bedrock returns one choice per request; `n` must be 1.",
        ));
    }
    if request.logprobs == Some(true) || request.top_logprobs.is_some_and(|n| n > 0) {
        return Err(unsupported(
            "logprobs",
            "Bedrock Converse does not return log probabilities.",
        ));
    }
    if request.audio.is_some()
        || request
            .modalities
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m != "text"))
    {
        return Err(unsupported(
            "modalities",
            "Bedrock Converse answers with text only.",
        ));
    }
    if request.web_search_options.is_some() {
        return Err(unsupported(
            "web_search_options",
            "Bedrock Converse has no web search.",
        ));
    }
    Ok(())
}

/// Text that Converse refuses as "blank".
fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

/// What the first turn becomes when a conversation opens with the assistant
/// (a chat UI's greeting): Converse requires a user turn first.
const OPENING_USER_TURN: &str = "(conversation start)";

/// The conversation being built: system text apart, turns alternating.
struct Conversation<'a> {
    system: Vec<TextBlock<'a>>,
    turns: Vec<Turn<'a>>,
    /// The functions the history's tool calls name, in order: Converse requires
    /// `toolConfig` whenever `toolUse` or `toolResult` blocks are present, even
    /// when the client said `tool_choice: "none"` or sent no `tools`.
    tool_names: Vec<&'a str>,
    has_tool_results: bool,
    /// Llama and Mistral refuse text and tool results in one turn ("Conversation
    /// blocks and tool result blocks cannot be provided in the same turn").
    text_beside_tool_results: bool,
}

impl<'a> Conversation<'a> {
    fn new(model_id: &str) -> Conversation<'a> {
        let family = base_model(model_id);
        Conversation {
            system: Vec::new(),
            turns: Vec::new(),
            tool_names: Vec::new(),
            has_tool_results: false,
            text_beside_tool_results: !(family.starts_with("meta.")
                || family.starts_with("mistral.")),
        }
    }

    fn has_tool_blocks(&self) -> bool {
        self.has_tool_results || !self.tool_names.is_empty()
    }

    /// User text right after tool results, for models that refuse the two in one
    /// turn: the text goes into the last tool result instead (lossy, but the
    /// model still reads it right after the results).
    fn fold_text_into_tool_result(&mut self, blocks: &mut Vec<Block<'a>>) {
        let Some(Block::ToolResult(result)) = self
            .turns
            .last_mut()
            .filter(|t| t.role == "user")
            .and_then(|t| t.content.last_mut())
        else {
            return;
        };
        blocks.retain(|block| match block {
            Block::Text(text) => {
                result.content.push(TextBlock { text });
                false
            }
            _ => true,
        });
    }

    /// The turns, starting with a user turn as Converse requires.
    fn into_turns(mut self) -> Vec<Turn<'a>> {
        if self.turns.first().is_some_and(|t| t.role == "assistant") {
            self.turns.insert(
                0,
                Turn {
                    role: "user",
                    content: vec![Block::Text(OPENING_USER_TURN)],
                },
            );
        }
        self.turns
    }

    fn add(&mut self, message: &'a Message<'_>, i: usize) -> Result<(), ApiError> {
        let at = |field: &str| format!("messages[{i}].{field}");
        match message.role.as_ref() {
            "system" | "developer" => {
                for text in texts(message.content.as_ref(), &at("content"))? {
                    if !is_blank(text) {
                        self.system.push(TextBlock { text });
                    }
                }
            }
            "user" => {
                let mut blocks = user_blocks(message.content.as_ref(), &at("content"))?;
                if !self.text_beside_tool_results {
                    self.fold_text_into_tool_result(&mut blocks);
                }
                self.push("user", blocks);
            }
            "assistant" => {
                let mut blocks = Vec::new();
                for text in texts(message.content.as_ref(), &at("content"))? {
                    if !is_blank(text) {
                        blocks.push(Block::Text(text));
                    }
                }
                for (k, call) in message.tool_calls.iter().flatten().enumerate() {
                    blocks.push(Block::ToolUse(ToolUse {
                        tool_use_id: &call.id,
                        name: &call.function.name,
                        input: arguments(
                            &call.function.arguments,
                            &at(&format!("tool_calls[{k}].function.arguments")),
                        )?,
                    }));
                    if !self.tool_names.contains(&call.function.name.as_ref()) {
                        self.tool_names.push(&call.function.name);
                    }
                }
                self.push("assistant", blocks);
            }
            "tool" => {
                let Some(id) = &message.tool_call_id else {
                    return Err(invalid(
                        &at("tool_call_id"),
                        "A `tool` message needs `tool_call_id`.",
                    ));
                };
                let content = texts(message.content.as_ref(), &at("content"))?
                    .into_iter()
                    .filter(|t| !is_blank(t))
                    .map(|text| TextBlock { text })
                    .collect();
                // Consecutive tool results land in one user turn, as Converse
                // requires; so does user text that follows them.
                self.push(
                    "user",
                    vec![Block::ToolResult(ToolResult {
                        tool_use_id: id,
                        content,
                    })],
                );
                self.has_tool_results = true;
            }
            other => {
                return Err(invalid(
                    &at("role"),
                    format!("The role `{other}` cannot be sent to Bedrock (expected system, developer, user, assistant or tool)."),
                ))
            }
        }
        Ok(())
    }

    /// Appends `blocks` as a `role` turn, merged into the previous turn when it has
    /// the same role (Converse requires alternation). Empty messages add nothing:
    /// Converse refuses empty content.
    fn push(&mut self, role: &'static str, blocks: Vec<Block<'a>>) {
        if blocks.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some(turn) if turn.role == role => turn.content.extend(blocks),
            _ => self.turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }
}

/// The text of a `content` that may only hold text (system, assistant, tool).
fn texts<'a>(content: Option<&'a Content<'_>>, at: &str) -> Result<Vec<&'a str>, ApiError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(vec![text]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(
                |(k, part)| match (part.kind.as_ref(), &part.text, &part.refusal) {
                    ("text", Some(text), _) => Ok(text.as_ref()),
                    ("refusal", _, Some(refusal)) => Ok(refusal.as_ref()),
                    (kind, _, _) => Err(invalid(
                        &format!("{at}[{k}]"),
                        format!("A content part of type `{kind}` is not allowed here (text only)."),
                    )),
                },
            )
            .collect(),
    }
}

fn user_blocks<'a>(content: Option<&'a Content<'_>>, at: &str) -> Result<Vec<Block<'a>>, ApiError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(Content::Text(text)) if is_blank(text) => return Ok(Vec::new()),
        Some(Content::Text(text)) => return Ok(vec![Block::Text(text)]),
        Some(Content::Parts(parts)) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (k, part) in parts.iter().enumerate() {
        let at = format!("{at}[{k}]");
        blocks.push(user_part(part, &at)?);
    }
    blocks.retain(|b| !matches!(b, Block::Text(t) if is_blank(t)));
    Ok(blocks)
}

fn user_part<'a>(part: &'a Part<'_>, at: &str) -> Result<Block<'a>, ApiError> {
    match part.kind.as_ref() {
        "text" => Ok(Block::Text(part.text.as_deref().unwrap_or(""))),
        "image_url" => {
            let Some(image) = &part.image_url else {
                return Err(invalid(at, "An `image_url` part needs `image_url.url`."));
            };
            image_block(&image.url, &format!("{at}.image_url.url")).map(Block::Image)
        }
        kind => Err(unsupported(
            at,
            format!("Content parts of type `{kind}` cannot be sent to Bedrock Converse (text and data-URL images can)."),
        )),
    }
}

/// A `data:image/<png|jpeg|gif|webp>;base64,<payload>` URL as a Converse image,
/// the base64 text passed on as it is.
fn image_block<'a>(url: &'a str, at: &str) -> Result<Image<'a>, ApiError> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(unsupported(
            at,
            "Bedrock cannot fetch images from URLs: send the image inline as a data URL (data:image/png;base64,...).",
        ));
    };
    let Some((media, payload)) = rest.split_once(',') else {
        return Err(invalid(at, "The data URL has no `,` before its data."));
    };
    let Some(mime) = media.strip_suffix(";base64") else {
        return Err(invalid(
            at,
            "The image data URL must be base64 (`;base64,`).",
        ));
    };
    let format = match mime.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(invalid(
                at,
                format!("Bedrock takes png, jpeg, gif or webp images, not `{other}`."),
            ))
        }
    };
    Ok(Image {
        format,
        source: ImageSource { bytes: payload },
    })
}

/// A tool call's `arguments` text as the JSON value Converse wants in `input`; an
/// empty text is a call without arguments.
fn arguments<'a>(text: &'a str, at: &str) -> Result<&'a RawValue, ApiError> {
    let text = text.trim();
    let text = if text.is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|_| invalid(at, "Tool call arguments must be JSON."))
}

fn inference_config<'a>(request: &'a ChatRequest<'_>) -> Result<InferenceConfig<'a>, ApiError> {
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    if max_tokens == Some(0) {
        return Err(invalid("max_tokens", "`max_tokens` must be at least 1."));
    }
    let stop_sequences = request
        .stop
        .iter()
        .flat_map(|s| s.0.iter())
        .map(Cow::as_ref)
        .filter(|s| !s.is_empty())
        .collect();
    Ok(InferenceConfig {
        max_tokens,
        temperature: request.temperature.map(|t| t.clamp(0.0, MAX_TEMPERATURE)),
        top_p: request.top_p,
        stop_sequences,
    })
}

/// `tools` and `tool_choice` as `toolConfig`. Converse has no "none": without
/// tool history `toolConfig` is left out; with it, Converse requires the tools,
/// so they are sent and the model may still call one (`PROVIDERS.md` §4.1). A
/// history with tool calls but no `tools` (a client asking for a summary after
/// tool use) gets one schema-less tool per function the history names.
fn tool_config<'a>(
    request: &'a ChatRequest<'_>,
    conversation: &Conversation<'a>,
) -> Result<Option<ToolConfig<'a>>, ApiError> {
    let has_tool_blocks = conversation.has_tool_blocks();
    let empty_schema: &'static RawValue =
        serde_json::from_str(EMPTY_OBJECT_SCHEMA).map_err(|_| ApiError::internal())?;
    let mut tools = Vec::new();
    for (i, tool) in request.tools.iter().flatten().enumerate() {
        let (true, Some(function)) = (tool.kind == "function", &tool.function) else {
            return Err(unsupported(
                &format!("tools[{i}]"),
                format!(
                    "Only `function` tools can be sent to Bedrock, not `{}`.",
                    tool.kind
                ),
            ));
        };
        let json = function.parameters.unwrap_or(empty_schema);
        tools.push(ToolEntry {
            tool_spec: ToolSpec {
                name: &function.name,
                description: function.description.as_deref(),
                input_schema: InputSchema { json },
            },
        });
    }
    let tool_choice = match &request.tool_choice {
        None => None,
        Some(ToolChoice::Mode(mode)) => match mode.as_ref() {
            "auto" => Some(ConverseToolChoice::Auto(Empty {})),
            "required" => Some(ConverseToolChoice::Any(Empty {})),
            "none" if has_tool_blocks => None,
            "none" => return Ok(None),
            other => {
                return Err(invalid(
                    "tool_choice",
                    format!(
                        "`tool_choice` must be none, auto, required or a function, not `{other}`."
                    ),
                ))
            }
        },
        Some(ToolChoice::Function(name)) => Some(ConverseToolChoice::Tool(NamedTool { name })),
    };
    if tools.is_empty() {
        if tool_choice.is_some() {
            return Err(invalid("tool_choice", "`tool_choice` needs `tools`."));
        }
        if !has_tool_blocks {
            return Ok(None);
        }
        tools = conversation
            .tool_names
            .iter()
            .map(|name| ToolEntry {
                tool_spec: ToolSpec {
                    name,
                    description: None,
                    input_schema: InputSchema { json: empty_schema },
                },
            })
            .collect();
    }
    Ok(Some(ToolConfig { tools, tool_choice }))
}

/// Model families whose Converse API takes `outputConfig.textFormat` (AWS's
/// "structured outputs" list); the README lists the same families.
const STRUCTURED_OUTPUT_FAMILIES: &[&str] = &[
    "anthropic.claude-haiku-4-5",
    "anthropic.claude-sonnet-4-5",
    "anthropic.claude-sonnet-4-6",
    "anthropic.claude-opus-4-5",
    "anthropic.claude-opus-4-6",
    "anthropic.claude-opus-4-7",
    "openai.gpt-oss",
    "qwen.",
    "deepseek.",
    "mistral.",
    "google.gemma",
    "nvidia.nemotron",
    "minimax.",
    "moonshot",
];

/// A model id without its cross-region inference profile prefix (`us.`, `eu.`,
/// `apac.`, `global.`, `us-gov.`, ...).
fn base_model(model_id: &str) -> &str {
    match model_id.split_once('.') {
        Some((prefix, rest))
            if prefix.len() <= 6
                && prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                && rest.contains('.') =>
        {
            rest
        }
        _ => model_id,
    }
}

/// Whether `model_id` is known to take structured output. ARNs (application
/// inference profiles, provisioned models) do not say what they run: they are
/// given the benefit of the doubt, and Bedrock's own 400 answers if wrong.
fn takes_structured_output(model_id: &str) -> bool {
    model_id.starts_with("arn:")
        || STRUCTURED_OUTPUT_FAMILIES
            .iter()
            .any(|family| base_model(model_id).starts_with(family))
}

fn output_config<'a>(
    request: &'a ChatRequest<'_>,
    model_id: &str,
) -> Result<Option<OutputConfig<'a>>, ApiError> {
    let Some(format) = &request.response_format else {
        return Ok(None);
    };
    match format.kind.as_ref() {
        "text" => Ok(None),
        "json_schema" => {
            let Some(spec) = &format.json_schema else {
                return Err(invalid(
                    "response_format.json_schema",
                    "`json_schema` is missing.",
                ));
            };
            let Some(schema) = spec.schema else {
                return Err(invalid(
                    "response_format.json_schema.schema",
                    "`json_schema.schema` is missing.",
                ));
            };
            if !takes_structured_output(model_id) {
                return Err(unsupported(
                    "response_format",
                    format!("The Bedrock model `{model_id}` does not support structured output (json_schema)."),
                ));
            }
            Ok(Some(OutputConfig {
                text_format: TextFormat {
                    kind: "json_schema",
                    structure: Structure {
                        json_schema: ConverseJsonSchema {
                            schema: schema.get(),
                            name: &spec.name,
                            description: spec.description.as_deref(),
                        },
                    },
                },
            }))
        }
        "json_object" => Err(unsupported(
            "response_format",
            "Bedrock has no JSON mode without a schema: use `response_format: {type: \"json_schema\", ...}`.",
        )),
        other => Err(invalid(
            "response_format",
            format!("Unknown `response_format` type `{other}`."),
        )),
    }
}

/// `reasoning_effort` reaches the models that take it under that name (OpenAI's
/// open-weight models); other families configure reasoning in their own ways,
/// so it is refused for them rather than silently dropped.
fn reasoning<'a>(
    request: &'a ChatRequest<'_>,
    model_id: &str,
) -> Result<Option<ReasoningEffort<'a>>, ApiError> {
    let Some(effort) = &request.reasoning_effort else {
        return Ok(None);
    };
    if base_model(model_id).starts_with("openai.") {
        return Ok(Some(ReasoningEffort {
            reasoning_effort: effort,
        }));
    }
    Err(unsupported(
        "reasoning_effort",
        format!("`reasoning_effort` is not supported for the Bedrock model `{model_id}`."),
    ))
}

#[cfg(test)]
mod tests;
