//! The Bedrock dialect as the attempt loop uses it: encode (path, headers,
//! signature, body) and the answer's translation.

use bytes::Bytes;
use pingora::http::RequestHeader;

use super::*;
use crate::config::{self, Config};

fn config(provider: &str) -> Config {
    let text = format!(
        "keys:\n  - {{ name: app, key: sk-virtual-1 }}\nproviders:\n  br:\n    type: bedrock\n    region: us-east-1\n{provider}models:\n  claude:\n    targets:\n      - {{ provider: br, model: \"anthropic.claude-3-haiku-20240307-v1:0\" }}\n"
    );
    config::parse(&text, "test.yaml").unwrap()
}

fn chat(body: &str) -> LlmRequest {
    LlmRequest::parse(Operation::ChatCompletions, Bytes::from(body.to_string())).unwrap()
}

fn header<'a>(h: &'a RequestHeader, name: &str) -> Option<&'a str> {
    h.headers.get(name).and_then(|v| v.to_str().ok())
}

const SIGV4: &str = "    access_key_id: AKIDEXAMPLE\n    secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n    session_token: token-1\n";

#[test]
fn model_ids_and_arns_are_one_percent_encoded_segment() {
    assert_eq!(
        converse_path("anthropic.claude-3-haiku-20240307-v1:0", false),
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(
        converse_path(
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2",
            true
        ),
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2/converse-stream"
    );
}

#[test]
fn a_signed_converse_request_goes_to_the_regional_endpoint() {
    let config = config(SIGV4);
    let target = &config.models["claude"].targets[0];
    let request = chat(r#"{"model":"claude","messages":[{"role":"user","content":"Hello"}]}"#);
    let encoded = Bedrock.encode(&request, target, "req-1").unwrap();
    let h = &encoded.header;
    assert_eq!(h.method, "POST");
    assert_eq!(
        h.uri.to_string(),
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(
        header(h, "host"),
        Some("bedrock-runtime.us-east-1.amazonaws.com")
    );
    assert_eq!(header(h, "content-type"), Some("application/json"));
    assert_eq!(header(h, "x-amz-security-token"), Some("token-1"));
    let date = header(h, "x-amz-date").unwrap();
    assert_eq!(date.len(), 16);
    let authorization = header(h, "authorization").unwrap();
    assert!(authorization.starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/us-east-1/bedrock/aws4_request, SignedHeaders=",
        &date[..8]
    )));
    assert!(authorization.contains("content-type;host;"));
    assert!(authorization.contains("x-amz-date;x-amz-security-token"));
    assert_eq!(
        encoded.body,
        Bytes::from_static(br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}"#)
    );
}

#[test]
fn a_stream_goes_to_converse_stream_and_an_api_key_is_a_bearer_token() {
    let config = config("    endpoint: http://127.0.0.1:8123\n    api_key: bedrock-api-key-1\n");
    let target = &config.models["claude"].targets[0];
    let request =
        chat(r#"{"model":"claude","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#);
    let encoded = Bedrock.encode(&request, target, "req-2").unwrap();
    let h = &encoded.header;
    assert!(h.uri.path().ends_with("/converse-stream"));
    assert_eq!(header(h, "host"), Some("127.0.0.1:8123"));
    assert_eq!(
        header(h, "accept"),
        Some("application/vnd.amazon.eventstream")
    );
    assert_eq!(header(h, "authorization"), Some("Bearer bedrock-api-key-1"));
    assert_eq!(header(h, "x-amz-date"), None);
}

#[test]
fn embeddings_are_refused_before_anything_is_sent() {
    let config = config(SIGV4);
    let target = &config.models["claude"].targets[0];
    let request = LlmRequest::parse(
        Operation::Embeddings,
        Bytes::from_static(br#"{"model":"claude","input":"x"}"#),
    )
    .unwrap();
    let Err(error) = Bedrock.encode(&request, target, "r") else {
        panic!("embeddings must not be encoded for Bedrock");
    };
    assert_eq!(error.status, 400);
    assert!(error.message.contains("embeddings"));
}

#[test]
fn the_translator_reports_the_target_model_and_the_request_id() {
    let config = config(SIGV4);
    let target = &config.models["claude"].targets[0];
    let request = chat(r#"{"model":"claude","messages":[]}"#);
    let mut translator = Bedrock.translator(&request, target, "req-3");
    let answer = translator
        .whole(Bytes::from_static(
            br#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4}}"#,
        ))
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["id"], "chatcmpl-req-3");
    assert_eq!(json["model"], "anthropic.claude-3-haiku-20240307-v1:0");
    assert_eq!(answer.usage.unwrap().input_tokens, 3);
}

#[test]
fn the_health_probe_is_a_connect() {
    let config = config(SIGV4);
    let probe = Bedrock
        .health_probe(&config.models["claude"].targets[0])
        .unwrap();
    assert!(matches!(probe, HealthProbe::Connect));
}

#[test]
fn errors_are_read_from_the_error_type_header() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-amzn-errortype",
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
            .parse()
            .unwrap(),
    );
    assert_eq!(
        Bedrock.classify(429, &headers, br#"{"message":"Too many requests"}"#),
        UpstreamFault::RateLimited { kind: "requests" }
    );
}
