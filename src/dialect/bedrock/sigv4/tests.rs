//! `sign_request` against AWS's published SigV4 test suite
//! (`../shared/vectors/sigv4/aws-signing-test-suite/v4`): each case gives a
//! request, the signing context and the `Authorization` header AWS expects.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SigningSettings,
    UriPathNormalizationMode,
};
use pingora::http::RequestHeader;
use serde::Deserialize;

use super::{sign_request, SigningKey, BEDROCK_SERVICE};

#[derive(Deserialize)]
struct Context {
    credentials: CaseCredentials,
    normalize: bool,
    region: String,
    service: String,
    sign_body: bool,
    timestamp: String,
    #[serde(default)]
    omit_session_token: bool,
}

#[derive(Deserialize)]
struct CaseCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/sigv4/aws-signing-test-suite/v4")
}

/// `request.txt`: a request line, `Name:value` header lines, a blank line, the body.
/// `None` when the request cannot be expressed as an HTTP/1.1 header of ours
/// (folded header lines, spaces or raw UTF-8 in the path).
fn parse_request(text: &str) -> Option<(RequestHeader, Vec<u8>)> {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?;
    let path = request_line.next()?;
    if request_line.next() != Some("HTTP/1.1") || !path.is_ascii() {
        return None;
    }
    let mut header = RequestHeader::build(method, path.as_bytes(), None).ok()?;
    for line in lines {
        if line.starts_with(' ') {
            return None;
        }
        let (name, value) = line.split_once(':')?;
        header
            .append_header(name.to_string(), value.to_string())
            .ok()?;
    }
    Some((header, body.as_bytes().to_vec()))
}

fn expected_authorization(case: &Path) -> String {
    let signed = std::fs::read_to_string(case.join("header-signed-request.txt")).unwrap();
    signed
        .lines()
        .find_map(|l| l.strip_prefix("Authorization:"))
        .unwrap_or_else(|| panic!("{} has no Authorization", case.display()))
        .to_string()
}

/// The suite's cases sign the path as it is written (`/example%20space/` stays
/// so in the canonical request); its two double-encoding cases come without a
/// context and are checked below with Bedrock's own settings.
fn settings_of(context: &Context) -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = if context.normalize {
        UriPathNormalizationMode::Enabled
    } else {
        UriPathNormalizationMode::Disabled
    };
    if context.sign_body {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    if context.omit_session_token {
        settings.session_token_mode = SessionTokenMode::Exclude;
    }
    settings
}

#[test]
fn signs_every_expressible_case_of_the_aws_suite_as_aws_expects() {
    let mut checked = Vec::new();
    let mut skipped = Vec::new();
    let mut cases: Vec<_> = std::fs::read_dir(suite_dir())
        .expect("the SigV4 suite is in ../shared/vectors")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("context.json").exists())
        .collect();
    cases.sort();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let context: Context =
            serde_json::from_slice(&std::fs::read(case.join("context.json")).unwrap()).unwrap();
        let request = std::fs::read_to_string(case.join("request.txt")).unwrap();
        let Some((mut header, body)) = parse_request(&request) else {
            skipped.push(name);
            continue;
        };
        let time = chrono::DateTime::parse_from_rfc3339(&context.timestamp).unwrap();
        let time = UNIX_EPOCH + Duration::from_secs(time.timestamp() as u64);
        let key = SigningKey {
            access_key_id: &context.credentials.access_key_id,
            secret_access_key: &context.credentials.secret_access_key,
            session_token: context.credentials.token.as_deref(),
            region: &context.region,
            service: &context.service,
        };
        sign_request(&mut header, &body, &key, time, settings_of(&context))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = header
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(got, expected_authorization(&case), "case {name}");
        checked.push(name);
    }
    // Only cases our HTTP header type cannot hold are skipped: folded header
    // lines and paths with raw spaces or UTF-8 (a client never sends those).
    assert!(
        skipped.len() <= 6,
        "skipped more than the inexpressible cases: {skipped:?}"
    );
    assert!(checked.len() >= 30, "too few cases checked: {checked:?}");
    assert!(checked
        .iter()
        .any(|c| c == "get-vanilla-with-session-token"));
    assert!(checked.iter().any(|c| c == "post-sts-header-after"));
}

/// The classic suite's `double-url-encode` case (smithy-rs's addition): an ARN
/// with `%3A` in the path, signed with the settings the gateway uses for Bedrock
/// (the canonical URI encodes the path again: `%253A`).
#[test]
fn signs_the_double_url_encode_case_with_the_gateways_settings() {
    let dir = suite_dir().join("../../aws-sig-v4-test-suite/double-url-encode");
    let mut header = RequestHeader::build(
        "POST",
        b"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A892717189312%3Afunction%3Amy-rusty-fun/invocations",
        None,
    )
    .unwrap();
    header
        .insert_header("host", "lambda.us-east-2.amazonaws.com")
        .unwrap();
    let key = SigningKey {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
        region: "us-east-2",
        service: "lambda",
    };
    let time = UNIX_EPOCH + Duration::from_secs(1_620_747_645); // 2021-05-11T15:40:45Z
    sign_request(&mut header, b"", &key, time, SigningSettings::default()).unwrap();
    let expected = std::fs::read_to_string(dir.join("double-url-encode.authz")).unwrap();
    let got = header
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(got, expected.trim());
}

/// A Converse path as the gateway sends it: the model id's `:` is `%3A`, and the
/// canonical URI encodes it again. The expected signature was computed by hand
/// with botocore's `SigV4Auth` (an independent implementation) for this exact
/// request.
#[test]
fn signs_a_converse_path_with_a_colon_in_the_model_id() {
    let mut header = RequestHeader::build(
        "POST",
        b"/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        None,
    )
    .unwrap();
    header
        .insert_header("host", "bedrock-runtime.us-east-1.amazonaws.com")
        .unwrap();
    header
        .insert_header("content-type", "application/json")
        .unwrap();
    let body = br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}"#;
    let key = SigningKey {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: Some("session-token-example"),
        region: "us-east-1",
        service: BEDROCK_SERVICE,
    };
    let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
    sign_request(&mut header, body, &key, time, SigningSettings::default()).unwrap();
    let value = |name: &str| header.headers.get(name).unwrap().to_str().unwrap();
    assert_eq!(value("x-amz-date"), "20150830T123600Z");
    assert_eq!(value("x-amz-security-token"), "session-token-example");
    assert_eq!(value("authorization"), BOTOCORE_AUTHORIZATION);
}

const BOTOCORE_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=0e2ec01589fa27cb5650e17f873da62ad6254b036ff8ce8cb0936edc118f1d5f";
