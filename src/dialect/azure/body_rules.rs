//! What an Azure deployment accepts in a chat request body, by api-version.
//!
//! Azure refuses (HTTP 400) fields its api-version predates, so the gateway adapts
//! the body to the target's version instead of letting an app's newer request fail.
//! The whole policy is the [`RULES`] table; README.md documents the same table.
//! Sources: Azure OpenAI API-version lifecycle notes and the 2024-10-21 GA
//! inference spec (see `../shared/PROVIDERS.md` §2.1).

use bytes::Bytes;
use memchr::memmem;
use serde_json::value::RawValue;

use super::version::{ApiVersion, Since};
use crate::errors::ApiError;
use crate::json_members::{quoted, Members};

/// What a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A top-level field of the request body.
    Field(&'static str),
    /// Messages with this `role`.
    Role(&'static str),
}

/// What the gateway does when the target's api-version predates the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Remove it: the request means the same without it, or nearly so.
    Drop,
    /// Send it under another name (a field), or as another role (a message).
    Rename(&'static str),
    /// Answer 400: dropping it would silently change what the app asked for.
    Reject,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub subject: Subject,
    pub since: Since,
    pub action: Action,
}

const PREVIEW_2024_09: Since = Since {
    preview: 20240901,
    ga: None,
};
const PREVIEW_2024_09_GA_2024_10: Since = Since {
    preview: 20240901,
    ga: Some(20241021),
};
const PREVIEW_2024_12: Since = Since {
    preview: 20241201,
    ga: None,
};
const PREVIEW_2025_01: Since = Since {
    preview: 20250101,
    ga: None,
};

/// The table: the first api-versions that accept each subject, and what happens
/// on an older one. Versions that accept it get it unchanged.
pub const RULES: [Rule; 8] = [
    Rule {
        subject: Subject::Field("max_completion_tokens"),
        since: PREVIEW_2024_09_GA_2024_10,
        action: Action::Rename("max_tokens"),
    },
    Rule {
        subject: Subject::Field("parallel_tool_calls"),
        since: PREVIEW_2024_09_GA_2024_10,
        action: Action::Drop,
    },
    Rule {
        subject: Subject::Field("stream_options"),
        since: PREVIEW_2024_09,
        action: Action::Drop,
    },
    Rule {
        subject: Subject::Role("developer"),
        since: PREVIEW_2024_12,
        action: Action::Rename("system"),
    },
    Rule {
        subject: Subject::Field("store"),
        since: PREVIEW_2024_12,
        action: Action::Drop,
    },
    Rule {
        subject: Subject::Field("metadata"),
        since: PREVIEW_2024_12,
        action: Action::Drop,
    },
    Rule {
        subject: Subject::Field("reasoning_effort"),
        since: PREVIEW_2024_12,
        action: Action::Reject,
    },
    Rule {
        subject: Subject::Field("prediction"),
        since: PREVIEW_2025_01,
        action: Action::Drop,
    },
];

/// The chat `body` adapted to `version`: unchanged (the same bytes) when nothing
/// in it predates the version, else with the table's rules applied.
pub fn adapt(body: Bytes, version: &ApiVersion) -> Result<Bytes, ApiError> {
    let pending: Vec<&Rule> = RULES
        .iter()
        .filter(|r| !version.supports(r.since) && may_appear(&body, r.subject))
        .collect();
    if pending.is_empty() {
        return Ok(body);
    }
    let mut members = Members::parse(&body).map_err(|e| {
        ApiError::invalid_request(
            "invalid_json",
            format!("The request body is not valid JSON: {e}."),
        )
    })?;
    let mut changed = false;
    for rule in pending {
        changed |= apply(rule, &mut members, version)?;
    }
    Ok(if changed {
        Bytes::from(members.to_json())
    } else {
        body
    })
}

/// Whether `version` accepts the top-level `field` as it is: true for fields the
/// table does not name.
pub fn accepts_field(version: &ApiVersion, field: &str) -> bool {
    RULES
        .iter()
        .filter(|r| matches!(r.subject, Subject::Field(name) if name == field))
        .all(|r| version.supports(r.since))
}

/// A cheap scan before parsing: the subject's name must occur in the bytes.
fn may_appear(body: &[u8], subject: Subject) -> bool {
    let name = match subject {
        Subject::Field(name) | Subject::Role(name) => name,
    };
    memmem::find(body, name.as_bytes()).is_some()
}

/// Applies `rule`; whether the body changed.
fn apply(rule: &Rule, members: &mut Members, version: &ApiVersion) -> Result<bool, ApiError> {
    match (rule.subject, rule.action) {
        (Subject::Field(field), _) if !members.contains(field) => Ok(false),
        (Subject::Field(field), Action::Drop) => {
            members.remove(field);
            Ok(true)
        }
        (Subject::Field(field), Action::Rename(to)) => {
            if members.contains(to) {
                members.remove(field);
            } else {
                members.rename(field, to);
            }
            Ok(true)
        }
        (Subject::Field(field), Action::Reject) => Err(ApiError::invalid_request(
            "unsupported_parameter",
            format!(
                "Unsupported parameter: '{field}' is not supported by the Azure OpenAI \
                 api-version {version} this model is served with (it needs {} or later).",
                first_version(rule.since)
            ),
        )
        .with_param(field)),
        (Subject::Role(role), Action::Rename(to)) => rename_role(members, role, to),
        (Subject::Role(_), _) => Ok(false),
    }
}

/// Rewrites `"role": from` to `to` in every message; whether any changed.
fn rename_role(members: &mut Members, from: &str, to: &str) -> Result<bool, ApiError> {
    let Some(raw) = members.get("messages") else {
        return Ok(false);
    };
    let messages: Vec<&RawValue> = serde_json::from_str(raw).map_err(|_| {
        ApiError::invalid_request(
            "invalid_type",
            "Invalid type for 'messages': expected an array.",
        )
        .with_param("messages")
    })?;
    let from_raw = quoted(from);
    let mut changed = false;
    let mut out = String::with_capacity(raw.len());
    out.push('[');
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let text = message.get();
        match Members::parse(text.as_bytes()) {
            Ok(mut m) if m.get("role") == Some(from_raw.as_str()) => {
                m.set_raw("role", quoted(to));
                out.push_str(&m.to_json());
                changed = true;
            }
            _ => out.push_str(text),
        }
    }
    out.push(']');
    if changed {
        members.set_raw("messages", out);
    }
    Ok(changed)
}

/// The earliest version that accepts `since`, for error messages.
fn first_version(since: Since) -> String {
    let date = |d: u32| format!("{:04}-{:02}-{:02}", d / 10_000, d / 100 % 100, d % 100);
    match since.ga {
        Some(ga) => format!("{} or {}-preview", date(ga), date(since.preview)),
        None => format!("{}-preview", date(since.preview)),
    }
}

#[cfg(test)]
mod tests;
