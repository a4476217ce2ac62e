//! `${VAR}` and `${VAR:-default}` expansion inside parsed YAML string values.
//!
//! Expansion happens while a value is deserialised, never on the raw text, so a value
//! may hold `#` or `: ` and comments are never expanded. Because it runs inside
//! serde, an unset variable is reported with the line of the value that names it.
//! `$${` writes a literal `${`.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer};

/// A YAML string with environment references expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand(&raw, |name| std::env::var(name).ok())
            .map(Text)
            .map_err(|e| de::Error::custom(format!("`{raw}`: {e}")))
    }
}

/// Why a value could not be expanded. Its messages quote nothing of the value
/// but a well-formed variable name, so a secret's error can be shown as is;
/// other fields add the value themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `${` without its `}`.
    Unterminated,
    /// `${...}` whose inside is not a variable name; the inside, quoted only
    /// for values that are not secrets.
    InvalidReference(String),
    /// A variable that is not set and has no default.
    Unset(String),
}

impl ExpandError {
    /// The message for a secret field: nothing of the value, not even a
    /// malformed reference (it may be part of a literal key).
    pub fn redacted(&self) -> String {
        match self {
            ExpandError::InvalidReference(_) => {
                "a `${...}` reference is not a valid variable name (write `$${` for a literal `${`)"
                    .to_string()
            }
            other => other.to_string(),
        }
    }
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unterminated => {
                f.write_str("unterminated `${` (write `$${` for a literal `${`)")
            }
            ExpandError::InvalidReference(inside) => {
                write!(f, "`${{{inside}}}` is not a valid variable reference")
            }
            ExpandError::Unset(name) => write!(
                f,
                "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
            ),
        }
    }
}

/// Expands `${VAR}` / `${VAR:-default}` in `raw`, looking variables up with `lookup`.
pub fn expand(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(ExpandError::Unterminated)?;
            let reference = &after[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ExpandError::InvalidReference(reference.to_string()));
            }
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(ExpandError::Unset(name.to_string())),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A number that may also be written as a string with `${...}` references.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Number<T>(pub T);

impl<'de, T> Deserialize<'de> for Number<T>
where
    T: FromStr + Copy,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<T> de::Visitor<'_> for Visit<T>
        where
            T: FromStr + Copy,
        {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
                parse_number(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
                parse_number(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
                parse_number(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
                let expanded = expand(v, |n| std::env::var(n).ok())
                    .map_err(|e| E::custom(format!("`{v}`: {e}")))?;
                parse_number(expanded.trim())
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
            .map(Number)
    }
}

/// Parses a number of the field's type, naming the text when it does not fit.
fn parse_number<T: FromStr, E: de::Error>(text: &str) -> Result<T, E> {
    text.parse()
        .map_err(|_| E::custom(format!("`{text}` is not a valid number here")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_eq!(expand("a ${KEY} b", env).unwrap(), "a sk-1 b");
        assert_eq!(expand("${MISSING:-x: #y}", env).unwrap(), "x: #y");
        assert_eq!(expand("${MISSING:-}", env).unwrap(), "");
        assert_eq!(expand("${EMPTY:-d}", env).unwrap(), "");
        assert_eq!(expand("cost $5 $${KEY}", env).unwrap(), "cost $5 ${KEY}");
    }

    #[test]
    fn unset_variable_without_default_is_an_error() {
        let e = expand("${MISSING}", env).unwrap_err();
        assert!(e.to_string().contains("`MISSING` is not set"), "{e}");
        assert_eq!(expand("${KEY", env), Err(ExpandError::Unterminated));
        assert_eq!(
            expand("${bad name}", env),
            Err(ExpandError::InvalidReference("bad name".into()))
        );
    }

    #[test]
    fn redacted_messages_quote_nothing_of_the_value() {
        let value = "sk-live-9f8e7d${not a name}";
        let e = expand(value, env).unwrap_err();
        assert!(e.to_string().contains("not a name"));
        assert!(!e.redacted().contains("not a name"), "{}", e.redacted());
        let e = expand("sk-live-9f8e7d${", env).unwrap_err();
        assert!(!e.redacted().contains("sk-live"), "{}", e.redacted());
    }
}
