//! Byte-level scans of JSON request bodies and SSE response bodies. The benchmark
//! only needs to know a few facts (is this a stream, which model, did a content
//! event arrive), and a scan costs far less than parsing, so the fake upstream
//! stays much faster than anything it is put behind.

/// The position of the first occurrence of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// For each occurrence of the JSON key `"key"` followed by `:`, the bytes after
/// the colon with leading whitespace skipped.
fn values_of<'a>(json: &'a [u8], key: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
    let quoted = format!("\"{key}\"").into_bytes();
    let mut rest = json;
    std::iter::from_fn(move || loop {
        let at = find(rest, &quoted)?;
        rest = &rest[at + quoted.len()..];
        let after = skip_ws(rest);
        if let Some(value) = after.strip_prefix(b":") {
            return Some(skip_ws(value));
        }
    })
}

fn skip_ws(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b" \t\r\n".contains(b))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Whether some `"key": true` appears in `json` (at any depth).
pub fn has_true(json: &[u8], key: &str) -> bool {
    values_of(json, key).any(|v| v.starts_with(b"true"))
}

/// Whether some `"key": "value"` appears in `json` (at any depth, no escapes).
pub fn has_string(json: &[u8], key: &str, value: &str) -> bool {
    let quoted = format!("\"{value}\"");
    values_of(json, key).any(|v| v.starts_with(quoted.as_bytes()))
}

/// Whether a streamed body carries its first token: an SSE `data:` event with a
/// non-empty `"content"` string, or a Bedrock event frame with a non-empty
/// `"text"` delta.
pub fn has_content(body: &[u8]) -> bool {
    let non_empty = |v: &[u8]| v.len() > 1 && v[0] == b'"' && v[1] != b'"';
    (find(body, b"data:").is_some() && values_of(body, "content").any(non_empty))
        || (find(body, b":event-type").is_some() && values_of(body, "text").any(non_empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_flags_and_strings() {
        let body = br#"{"model": "bench-hold","stream_options":{},"stream" :  true}"#;
        assert!(has_true(body, "stream"));
        assert!(has_string(body, "model", "bench-hold"));
        assert!(!has_string(body, "model", "bench-model"));
        assert!(!has_true(br#"{"stream":false,"x":"stream"}"#, "stream"));
        assert!(!has_true(br#"{"stream_x":true}"#, "stream"));
    }

    #[test]
    fn detects_content_events() {
        assert!(!has_content(
            b"data: {\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}\n\n"
        ));
        assert!(!has_content(b"data: {\"delta\":{\"content\":null}}\n\n"));
        assert!(has_content(
            b"data: {\"delta\":{\"content\":\"\"}}\n\ndata: {\"delta\":{\"content\": \"hi\"}}\n\n"
        ));
        assert!(!has_content(b"{\"content\":\"hi\"}"));
        let delta = crate::bedrock::event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
        )
        .unwrap();
        assert!(has_content(&delta));
        let start = crate::bedrock::event("messageStart", r#"{"role":"assistant"}"#).unwrap();
        assert!(!has_content(&start));
    }

    #[test]
    fn find_handles_edges() {
        assert_eq!(find(b"abc", b""), Some(0));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"xxabc", b"abc"), Some(2));
    }
}
