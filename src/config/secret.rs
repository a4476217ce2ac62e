//! Secret values: virtual keys, provider keys, AWS credentials.
//!
//! A [`Secret`] never prints its value: `Debug` and `Display` show a redaction, so a
//! secret that slips into a log line, an error or a panic message stays hidden.

use std::fmt;

use serde::{de::Error as _, Deserialize, Deserializer};

use super::expand::{expand, ExpandError, Text};

/// The shortest piece of a secret that counts as quoting it.
pub const QUOTE_WINDOW: usize = 6;

/// A credential read from the config or from a `<field>_file`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    #[cfg(test)]
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `text` quotes this secret, whole or any piece of [`QUOTE_WINDOW`]
    /// characters of it (providers echo refused keys partly masked, like
    /// `sk-abc***xyz`), so upstream messages can be checked before they are logged.
    pub fn quoted_in(&self, text: &str) -> bool {
        let secret = self.0.as_bytes();
        if secret.is_empty() {
            return false;
        }
        let window = QUOTE_WINDOW.min(secret.len());
        secret
            .windows(window)
            .any(|piece| memchr::memmem::find(text.as_bytes(), piece).is_some())
    }

    /// True for an empty value (`${VAR:-}` with VAR unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Like [`Text`], but an expansion error never quotes the value: a literal
    /// key that happens to hold `${` must not end up in an error message. An
    /// unset variable quotes its reference instead, which is all the line holds
    /// and lets the error name that line (see `config::from_serde`); any other
    /// fault is reported at the enclosing mapping.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand(&raw, |name| std::env::var(name).ok())
            .map(Secret)
            .map_err(|e| match &e {
                ExpandError::Unset(name) => D::Error::custom(format!("`${{{name}}}`: {e}")),
                _ => D::Error::custom(e.redacted()),
            })
    }
}

/// A `<field>_file: PATH` entry: the file is read while the config is parsed, so a
/// missing file is reported at the line that names it. Trailing line breaks are
/// dropped (files written by `echo` or systemd's `LoadCredential=` end in one).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SecretFile(pub Secret);

impl<'de> Deserialize<'de> for SecretFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = Text::deserialize(d)?.0;
        let content = std::fs::read_to_string(&path)
            .map_err(|e| D::Error::custom(format!("`{path}`: cannot read the secret file: {e}")))?;
        let value = content.trim_end_matches(['\n', '\r']);
        Ok(SecretFile(Secret(value.to_string())))
    }
}

/// Picks the inline or the file form of one secret field; both at once is an error.
pub fn either(
    inline: Option<Secret>,
    file: Option<SecretFile>,
    field: &str,
) -> Result<Option<Secret>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("give either `{field}` or `{field}_file`, not both")),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(f)) => Ok(Some(f.0)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_whole_and_partly_masked_quotes() {
        let key = Secret::new("sk-upstream-0123456789abcdef");
        assert!(key.quoted_in("Incorrect API key provided: sk-upstream-0123456789abcdef."));
        assert!(key.quoted_in("Incorrect API key provided: sk-ups*****************cdef."));
        assert!(!key.quoted_in("Access denied due to invalid subscription key."));
        assert!(Secret::new("abc").quoted_in("key abc refused"));
        assert!(!Secret::new("").quoted_in("anything"));
    }

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("sk-live-123");
        assert!(!format!("{s:?}").contains("sk-live"));
        assert!(!format!("{s}").contains("sk-live"));
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn both_forms_at_once_is_an_error() {
        let file = SecretFile(Secret::new("b"));
        assert!(either(Some(Secret::new("a")), Some(file), "api_key").is_err());
    }
}
