//! Loading the YAML config: parse, expand, validate, and report faults as
//! `FILE:LINE: FIELD: MESSAGE`.

mod duration;
mod expand;
mod locate;
mod schema;
mod secret;
mod types;
mod validate;

use std::fmt;
use std::path::Path;

pub use secret::Secret;
pub use types::*;

/// Why a config file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The text of the config file at `path`, for [`parse`]. Start-up and reloads
/// read it once, then parse and fingerprint the same text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: None,
        field: String::new(),
        message: format!("cannot read the config file: {e}"),
    })
}

/// Validates config `text` that came from `file`.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: schema::RawConfig =
        serde_yaml::from_str(text).map_err(|e| from_serde(e, file, text))?;
    validate::validate(raw).map_err(|fault| ConfigError {
        file: file.to_string(),
        line: locate::line_of(text, &fault.path),
        field: fault.path.to_string(),
        message: fault.message,
    })
}

/// serde_yaml says `path: message at line L column C`; split that into our parts.
///
/// For a value our own deserialisers refused, serde_yaml points at the start of the
/// enclosing mapping; those messages begin with the offending value in backticks, so
/// the exact line (and the field on it) is found by looking for that value.
fn from_serde(e: serde_yaml::Error, file: &str, text: &str) -> ConfigError {
    let mut line = e.location().map(|l| l.line());
    let mut message = e.to_string();
    if let Some(pos) = message.rfind(" at line ") {
        message.truncate(pos);
    }
    let (mut field, message) = match message.split_once(": ") {
        Some((field, rest)) if !field.contains(' ') => (field.to_string(), rest.to_string()),
        _ => (String::new(), message),
    };
    if let (Some(from), Some(value)) = (line, quoted_value(&message)) {
        if let Some((found, key)) = locate::value_line(text, from, value) {
            line = Some(found);
            if !key.is_empty() && !field.ends_with(&key) {
                field = if field.is_empty() {
                    key
                } else {
                    format!("{field}.{key}")
                };
            }
        }
    }
    ConfigError {
        file: file.to_string(),
        line,
        field,
        message,
    }
}

/// The value a message starts with, written `` `value` ... ``.
fn quoted_value(message: &str) -> Option<&str> {
    let rest = message.strip_prefix('`')?;
    let end = rest.find('`')?;
    Some(&rest[..end]).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests;
