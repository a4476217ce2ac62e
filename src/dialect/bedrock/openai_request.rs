//! The parts of an OpenAI chat request that the Converse mapping reads, decoded
//! without copying: strings borrow from the request body where JSON allows, so a
//! multi-megabyte base64 image is never copied or decoded, and JSON the mapping
//! passes on whole (tool parameters, schemas) stays raw.
//!
//! Fields that can be either a string or a list (`content`, `stop`, `tool_choice`)
//! get small visitors instead of `#[serde(untagged)]`, which would buffer the
//! whole value first.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// `POST /v1/chat/completions`, as far as Converse can express it.
#[derive(Deserialize)]
pub struct ChatRequest<'a> {
    #[serde(borrow)]
    pub messages: Vec<Message<'a>>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    #[serde(borrow)]
    pub stop: Option<Strings<'a>>,
    #[serde(borrow)]
    pub tools: Option<Vec<Tool<'a>>>,
    #[serde(borrow)]
    pub tool_choice: Option<ToolChoice<'a>>,
    #[serde(borrow)]
    pub response_format: Option<ResponseFormat<'a>>,
    #[serde(borrow)]
    pub reasoning_effort: Option<Cow<'a, str>>,
    /// Fields Converse has no place for and whose absence the client would
    /// notice; any value but the neutral one is refused.
    pub n: Option<u64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u64>,
    #[serde(borrow)]
    pub modalities: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    pub audio: Option<&'a RawValue>,
    #[serde(borrow)]
    pub web_search_options: Option<&'a RawValue>,
}

/// One chat message; which fields matter depends on `role`.
#[derive(Deserialize)]
pub struct Message<'a> {
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    #[serde(borrow)]
    pub content: Option<Content<'a>>,
    #[serde(borrow)]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow)]
    pub tool_call_id: Option<Cow<'a, str>>,
}

/// A message's `content`: a string or a list of parts.
pub enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

/// One content part (`text`, `image_url`, `refusal`, ...).
#[derive(Deserialize)]
pub struct Part<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub image_url: Option<ImageUrl<'a>>,
}

/// `image_url.url`: a `data:` URL or a web URL (`detail` has no Converse equivalent).
#[derive(Deserialize)]
pub struct ImageUrl<'a> {
    #[serde(borrow)]
    pub url: Cow<'a, str>,
}

/// An assistant's earlier tool call.
#[derive(Deserialize)]
pub struct ToolCall<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub function: FunctionCall<'a>,
}

/// The function a tool call named, with its arguments as a JSON text.
#[derive(Deserialize)]
pub struct FunctionCall<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub arguments: Cow<'a, str>,
}

/// One entry of `tools`.
#[derive(Deserialize)]
pub struct Tool<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub function: Option<FunctionDef<'a>>,
}

/// A function the model may call; `parameters` is passed on as it came.
#[derive(Deserialize)]
pub struct FunctionDef<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub description: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub parameters: Option<&'a RawValue>,
}

/// `tool_choice`: `"none" | "auto" | "required"` or a named function.
pub enum ToolChoice<'a> {
    Mode(Cow<'a, str>),
    Function(Cow<'a, str>),
}

#[derive(Deserialize)]
struct NamedChoice<'a> {
    #[serde(borrow)]
    function: NamedFunction<'a>,
}

#[derive(Deserialize)]
struct NamedFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// `response_format`.
#[derive(Deserialize)]
pub struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub json_schema: Option<JsonSchema<'a>>,
}

/// `response_format.json_schema`.
#[derive(Deserialize)]
pub struct JsonSchema<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub description: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub schema: Option<&'a RawValue>,
}

/// A string or a list of strings (`stop`).
pub struct Strings<'a>(pub Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Parts<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Parts<'a> {
            type Value = Content<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::new();
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(Parts(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Strings<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for List<'a> {
            type Value = Strings<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Strings(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Strings(vec![Cow::Owned(v.to_owned())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Strings(items))
            }
        }
        d.deserialize_any(List(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ToolChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Choice<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Choice<'a> {
            type Value = ToolChoice<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    r#""none", "auto", "required" or {"type":"function","function":{"name":...}}"#,
                )
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ToolChoice::Mode(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ToolChoice::Mode(Cow::Owned(v.to_owned())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let named = NamedChoice::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ToolChoice::Function(named.function.name))
            }
        }
        d.deserialize_any(Choice(PhantomData))
    }
}
