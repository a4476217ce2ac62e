//! The token estimate a request reserves before it goes upstream (DESIGN.md §2):
//! prompt characters ÷ 4, plus the output allowance.
//!
//! "Prompt characters" are the characters of the text the model reads: every
//! string in `messages` (or an embedding's `input`), roles, names and tool-call
//! arguments included, and the `tools` (or `functions`) offered. Inline media
//! (`image_url.url`, `input_audio.data`, `file.file_data`) is skipped: a base64 image is hundreds of kilobytes of
//! characters but a few hundred tokens, and counting it would refuse requests
//! that fit. The reservation is corrected to the upstream's real usage anyway;
//! the estimate only has to be close and cheap. Token arrays (an embedding input
//! given as token ids) count one token per number.

use std::fmt;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use crate::llm_request::{LlmRequest, Operation};

/// Characters per token, OpenAI's rule of thumb for English text.
const CHARS_PER_TOKEN: u64 = 4;
/// Members whose string value is inline media, not text the model reads as such.
const MEDIA_MEMBERS: [&str; 3] = ["url", "data", "file_data"];

/// What a request reserves, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// The prompt's characters ÷ 4, rounded up.
    pub prompt: u64,
    /// `max_completion_tokens` / `max_tokens`, or `default_max_tokens`, for
    /// each of the `n` choices of a chat completion (an embedding generates none).
    pub output: u64,
}

impl Estimate {
    /// Both together: what the token budget reserves.
    pub fn total(self) -> u64 {
        self.prompt.saturating_add(self.output)
    }
}

/// What `request` reserves; `default_max_tokens` is the key's output allowance
/// for a request that names no limit of its own.
pub fn request_tokens(request: &LlmRequest, default_max_tokens: u64) -> Estimate {
    let output = match request.operation {
        Operation::ChatCompletions => request
            .max_tokens
            .unwrap_or(default_max_tokens)
            .saturating_mul(request.choices.max(1)),
        Operation::Embeddings => 0,
    };
    Estimate {
        prompt: prompt_tokens(request),
        output,
    }
}

/// The prompt's estimated tokens.
pub fn prompt_tokens(request: &LlmRequest) -> u64 {
    let mut chars = 0;
    for part in request.prompt() {
        let mut json = serde_json::Deserializer::from_slice(part);
        // `LlmRequest::parse` has checked the JSON; a failure here only means
        // less was counted.
        let _ = Walk(&mut chars).deserialize(&mut json);
    }
    tokens_in(chars)
}

/// Tokens in `chars` characters of text, rounded up.
pub fn tokens_in(chars: u64) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN)
}

/// Adds the characters of every string in a JSON value to its counter, media
/// skipped.
struct Walk<'c>(&'c mut u64);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        *self.0 += text.chars().count() as u64;
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        *self.0 += CHARS_PER_TOKEN;
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        *self.0 += CHARS_PER_TOKEN;
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        *self.0 += CHARS_PER_TOKEN;
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk(self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(MediaMember(media)) = map.next_key()? {
            if media {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Walk(self.0))?;
            }
        }
        Ok(())
    }
}

/// Whether an object member's name is one of [`MEDIA_MEMBERS`], read without
/// copying the name.
struct MediaMember(bool);

impl<'de> Deserialize<'de> for MediaMember {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(MediaMemberVisitor)
    }
}

struct MediaMemberVisitor;

impl Visitor<'_> for MediaMemberVisitor {
    type Value = MediaMember;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<MediaMember, E> {
        Ok(MediaMember(MEDIA_MEMBERS.contains(&name)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn chat(body: &str) -> LlmRequest {
        LlmRequest::parse(Operation::ChatCompletions, Bytes::from(body.to_string())).unwrap()
    }

    #[test]
    fn counts_the_text_of_every_message_and_rounds_up() {
        // "system" 6 + "Be brief." 9 + "user" 4 + "héllo wörld" 11 = 30 chars → 8 tokens.
        let r = chat(
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"h\u00e9llo w\u00f6rld"}]}"#,
        );
        assert_eq!(prompt_tokens(&r), 8);
        assert_eq!(request_tokens(&r, 1024).total(), 8 + 1024);
    }

    #[test]
    fn the_output_allowance_is_the_request_s_own_limit_when_it_names_one() {
        let r =
            chat(r#"{"model":"m","max_tokens":50,"messages":[{"role":"user","content":"abcd"}]}"#);
        assert_eq!(
            request_tokens(&r, 1024),
            Estimate {
                prompt: 2,
                output: 50
            }
        );
        let r = chat(r#"{"model":"m","max_tokens":50,"max_completion_tokens":70,"messages":[]}"#);
        assert_eq!(request_tokens(&r, 1024).total(), 70);
        // Each of the n choices may use the whole allowance.
        let r = chat(r#"{"model":"m","n":3,"max_tokens":50,"messages":[]}"#);
        assert_eq!(request_tokens(&r, 1024).output, 150);
        let r = chat(r#"{"model":"m","n":2,"messages":[]}"#);
        assert_eq!(request_tokens(&r, 100).output, 200);
    }

    #[test]
    fn inline_media_is_not_counted_as_text() {
        let image = "A".repeat(100_000);
        let r = chat(&format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"text","text":"what is this"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{image}","detail":"low"}}}}]}}]}}"#
        ));
        // "user" 4 + "text" 4 + "what is this" 12 + "image_url" 9 + "low" 3 = 32 → 8.
        assert_eq!(prompt_tokens(&r), 8);
    }

    #[test]
    fn embeddings_reserve_their_input_only() {
        let r = LlmRequest::parse(
            Operation::Embeddings,
            Bytes::from_static(br#"{"model":"e","input":["abcdefgh", [1, 2, 3]]}"#),
        )
        .unwrap();
        assert_eq!(request_tokens(&r, 1024).total(), 2 + 3);
    }

    #[test]
    fn the_tools_offered_are_part_of_the_prompt() {
        // "user" 4 + "hi" 2 + "function" 8 + "get_weather" 11 + "Weather." 8
        // + "object" 6 = 39 → 10 tokens.
        let r = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather.","parameters":{"type":"object"}}}]}"#,
        );
        assert_eq!(prompt_tokens(&r), 10);
    }
}
