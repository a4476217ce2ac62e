//! One test per row of the api-version table: an older version gets the row's
//! action, a version that accepts the subject gets the body byte for byte.

use bytes::Bytes;

use super::*;

const GA_OLD: &str = "2024-06-01";
const GA: &str = "2024-10-21";
const PREVIEW_2024_12: &str = "2024-12-01-preview";
const PREVIEW_2025_04: &str = "2025-04-01-preview";

fn adapted(body: &str, version: &str) -> Result<String, ApiError> {
    let version = ApiVersion::parse(version).unwrap();
    adapt(Bytes::from(body.to_string()), &version).map(|b| String::from_utf8(b.to_vec()).unwrap())
}

fn unchanged(body: &str, version: &str) {
    assert_eq!(adapted(body, version).unwrap(), body, "{version}");
}

#[test]
fn the_table_has_one_row_per_subject() {
    let mut subjects: Vec<Subject> = RULES.iter().map(|r| r.subject).collect();
    subjects.dedup();
    assert_eq!(subjects.len(), RULES.len());
}

#[test]
fn max_completion_tokens_is_renamed_before_2024_10_21() {
    let body = r#"{"model":"d","messages":[],"max_completion_tokens":50}"#;
    assert_eq!(
        adapted(body, GA_OLD).unwrap(),
        r#"{"model":"d","messages":[],"max_tokens":50}"#
    );
    assert_eq!(
        adapted(body, "2024-08-01-preview").unwrap(),
        r#"{"model":"d","messages":[],"max_tokens":50}"#
    );
    unchanged(body, GA);
    unchanged(body, "2024-09-01-preview");
}

#[test]
fn max_completion_tokens_gives_way_to_an_explicit_max_tokens() {
    let body = r#"{"max_tokens":10,"messages":[],"max_completion_tokens":50}"#;
    assert_eq!(
        adapted(body, GA_OLD).unwrap(),
        r#"{"max_tokens":10,"messages":[]}"#
    );
}

#[test]
fn parallel_tool_calls_is_dropped_before_2024_10_21() {
    let body = r#"{"messages":[],"tools":[],"parallel_tool_calls":false}"#;
    assert_eq!(
        adapted(body, GA_OLD).unwrap(),
        r#"{"messages":[],"tools":[]}"#
    );
    unchanged(body, GA);
}

#[test]
fn stream_options_is_dropped_on_ga_versions() {
    let body = r#"{"messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
    assert_eq!(
        adapted(body, GA).unwrap(),
        r#"{"messages":[],"stream":true}"#
    );
    unchanged(body, "2024-09-01-preview");
    unchanged(body, PREVIEW_2025_04);
}

#[test]
fn the_table_says_which_versions_accept_a_field() {
    let version = |v: &str| ApiVersion::parse(v).unwrap();
    assert!(!accepts_field(&version(GA), "stream_options"));
    assert!(accepts_field(
        &version("2024-09-01-preview"),
        "stream_options"
    ));
    assert!(accepts_field(&version(GA_OLD), "messages"));
}

#[test]
fn the_developer_role_becomes_system_before_2024_12_01_preview() {
    let body = r#"{"messages":[{"role":"developer","content":"Be brief."},{"content":"h\u00e9","role":"user"}]}"#;
    assert_eq!(
        adapted(body, GA).unwrap(),
        r#"{"messages":[{"role":"system","content":"Be brief."},{"content":"h\u00e9","role":"user"}]}"#
    );
    unchanged(body, PREVIEW_2024_12);
}

#[test]
fn a_developer_word_in_content_changes_nothing() {
    unchanged(
        r#"{"messages":[{"role":"user","content":"I am a developer"}]}"#,
        GA,
    );
}

#[test]
fn store_and_metadata_are_dropped_before_2024_12_01_preview() {
    let body = r#"{"messages":[],"store":true,"metadata":{"team":"a"}}"#;
    assert_eq!(adapted(body, GA).unwrap(), r#"{"messages":[]}"#);
    unchanged(body, PREVIEW_2024_12);
}

#[test]
fn reasoning_effort_is_refused_before_2024_12_01_preview() {
    let body = r#"{"messages":[],"reasoning_effort":"low"}"#;
    let error = adapted(body, GA).unwrap_err();
    assert_eq!(error.status, 400);
    assert_eq!(error.code.as_deref(), Some("unsupported_parameter"));
    assert_eq!(error.param.as_deref(), Some("reasoning_effort"));
    assert!(error.message.contains("2024-10-21"), "{}", error.message);
    assert!(
        error.message.contains("2024-12-01-preview"),
        "{}",
        error.message
    );
    unchanged(body, PREVIEW_2024_12);
}

#[test]
fn prediction_is_dropped_before_2025_01_01_preview() {
    let body = r#"{"messages":[],"prediction":{"type":"content","content":"x"}}"#;
    assert_eq!(
        adapted(body, PREVIEW_2024_12).unwrap(),
        r#"{"messages":[]}"#
    );
    unchanged(body, "2025-01-01-preview");
}

#[test]
fn other_fields_and_formatting_survive_an_adaptation() {
    let body = r#"{ "temperature" : 0.70, "messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}], "store": false, "x_vendor": {"n": 1e3} }"#;
    assert_eq!(
        adapted(body, GA).unwrap(),
        r#"{"temperature":0.70,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],"x_vendor":{"n": 1e3}}"#
    );
}
