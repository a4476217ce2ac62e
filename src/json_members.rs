//! Edits the members of a JSON object while keeping every value's bytes.
//!
//! Dialects that must drop or rename a field (Azure's api-version table) use this
//! instead of a `serde_json::Value` round trip, which would reformat numbers,
//! reorder keys and copy large values such as base64 images.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The members of one JSON object, in order, each value as its raw JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members<'a> {
    entries: Vec<(String, Cow<'a, str>)>,
}

impl<'a> Members<'a> {
    /// Reads the members of the object in `json`.
    pub fn parse(json: &'a [u8]) -> Result<Members<'a>, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// The raw JSON text of the first member named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Whether a member named `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Removes every member named `key`.
    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    /// Renames every member named `from` to `to`, keeping its place and value.
    pub fn rename(&mut self, from: &str, to: &str) {
        for (k, _) in self.entries.iter_mut().filter(|(k, _)| k == from) {
            *k = to.to_string();
        }
    }

    /// Replaces the value of every member named `key` with the JSON text `raw`.
    pub fn set_raw(&mut self, key: &str, raw: String) {
        for (_, v) in self.entries.iter_mut().filter(|(k, _)| k == key) {
            *v = Cow::Owned(raw.clone());
        }
    }

    /// Sets member `key` to the JSON text `raw`: in place when it exists, else
    /// appended.
    pub fn put_raw(&mut self, key: &str, raw: String) {
        if self.contains(key) {
            self.set_raw(key, raw);
        } else {
            self.entries.push((key.to_string(), Cow::Owned(raw)));
        }
    }

    /// The object as compact JSON: members in their order, values byte for byte.
    pub fn to_json(&self) -> String {
        let size: usize = self
            .entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum();
        let mut out = String::with_capacity(size + 2);
        out.push('{');
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&quoted(key));
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        out
    }
}

/// `text` as a JSON string literal.
pub fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
            entries.push((key, Cow::Borrowed(value.get())));
        }
        Ok(Members { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_values_byte_for_byte_and_members_in_order() {
        let json = br#"{ "b" : 1.50e3, "a":{"x": [1, 2]}, "c\u0021":"h\u00e9" }"#;
        let members = Members::parse(json).unwrap();
        assert_eq!(members.get("a"), Some(r#"{"x": [1, 2]}"#));
        assert_eq!(members.get("c!"), Some(r#""h\u00e9""#));
        assert_eq!(
            members.to_json(),
            r#"{"b":1.50e3,"a":{"x": [1, 2]},"c!":"h\u00e9"}"#
        );
    }

    #[test]
    fn removes_renames_and_replaces() {
        let mut m = Members::parse(br#"{"a":1,"b":2,"c":3}"#).unwrap();
        m.remove("b");
        m.rename("c", "d");
        m.set_raw("a", "\"x\"".into());
        assert!(!m.contains("b"));
        assert_eq!(m.to_json(), r#"{"a":"x","d":3}"#);
        m.put_raw("d", "4".into());
        m.put_raw("e", "5".into());
        assert_eq!(m.to_json(), r#"{"a":"x","d":4,"e":5}"#);
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        assert!(Members::parse(b"[1]").is_err());
        assert!(Members::parse(b"{\"a\":}").is_err());
    }
}
