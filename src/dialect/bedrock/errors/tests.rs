//! Bedrock's error answers, real ones from `../shared/vectors` and the table of
//! `PROVIDERS.md` §4.4, mapped to the gateway's error classes.

use std::path::Path;

use super::BedrockError;
use crate::dialect::UpstreamFault;

fn recorded(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/fixtures/vercel-ai/amazon-bedrock")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn a_recorded_validation_error_is_the_clients_with_its_message_verbatim() {
    let recorded = recorded("amazon-bedrock-empty-message-validation-error.json");
    let error_type = recorded["headers"]["x-amzn-errortype"].as_str();
    let body = serde_json::to_vec(&recorded["body"]).unwrap();
    let error = BedrockError::from_http(error_type, &body);
    assert_eq!(error.name, "ValidationException");
    let UpstreamFault::Client(api) = error.fault(400) else {
        panic!("a ValidationException is the client's fault");
    };
    assert_eq!(api.status, 400);
    assert_eq!(api.kind, "invalid_request_error");
    assert_eq!(api.code.as_deref(), Some("invalid_request"));
    assert_eq!(
        api.message,
        "The content field in the Message object at messages.1 is empty. Add a ContentBlock object to the content field and try again."
    );
}

#[test]
fn the_recorded_unknown_operation_names_itself_in_the_body() {
    let body = serde_json::to_vec(&recorded("issue-17523-unknown-operation.json")).unwrap();
    let error = BedrockError::from_http(None, &body);
    assert_eq!(error.name, "UnknownOperationException");
    assert!(matches!(
        error.fault(404),
        UpstreamFault::ModelNotFound { .. }
    ));
}

#[test]
fn a_too_long_prompt_is_context_length_exceeded() {
    let body = br#"{"message":"Input is too long for requested model."}"#;
    let error = BedrockError::from_http(
        Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        body,
    );
    let UpstreamFault::Client(api) = error.fault(400) else {
        panic!("client fault expected");
    };
    assert_eq!(api.code.as_deref(), Some("context_length_exceeded"));
}

#[test]
fn every_exception_maps_as_providers_md_decides() {
    let cases: [(&str, u16, &str); 13] = [
        ("ThrottlingException", 429, "rate_limited"),
        ("ModelNotReadyException", 429, "rate_limited"),
        ("ServiceQuotaExceededException", 400, "quota"),
        ("AccessDeniedException", 403, "auth"),
        ("InvalidSignatureException", 403, "auth"),
        ("UnrecognizedClientException", 403, "auth"),
        ("ExpiredTokenException", 403, "auth"),
        ("ResourceNotFoundException", 404, "not_found"),
        ("ModelTimeoutException", 408, "timeout"),
        ("ModelErrorException", 424, "server"),
        ("InternalServerException", 500, "server"),
        ("ServiceUnavailableException", 503, "server"),
        ("ValidationException", 400, "client"),
    ];
    for (name, status, class) in cases {
        let header = format!("{name}:http://internal.amazon.com/coral/com.amazon.bedrock/");
        let error = BedrockError::from_http(Some(&header), br#"{"message":"m"}"#);
        let got = match error.fault(status) {
            UpstreamFault::RateLimited { kind: "requests" } => "rate_limited",
            UpstreamFault::QuotaExhausted { retryable: true } => "quota",
            UpstreamFault::AuthRefused { .. } => "auth",
            UpstreamFault::ModelNotFound { .. } => "not_found",
            UpstreamFault::Timeout => "timeout",
            UpstreamFault::Server { .. } => "server",
            UpstreamFault::Client(_) => "client",
            UpstreamFault::RateLimited { .. } => "rate_limited with another kind",
            UpstreamFault::QuotaExhausted { .. } => "quota, not retried",
        };
        assert_eq!(got, class, "{name}");
    }
}

#[test]
fn unnamed_errors_fall_back_on_the_status() {
    let unnamed = |status| BedrockError::from_http(None, b"").fault(status);
    assert_eq!(
        unnamed(429),
        UpstreamFault::RateLimited { kind: "requests" }
    );
    assert_eq!(unnamed(408), UpstreamFault::Timeout);
    assert!(matches!(unnamed(401), UpstreamFault::AuthRefused { .. }));
    assert!(matches!(unnamed(502), UpstreamFault::Server { .. }));
    assert!(matches!(unnamed(302), UpstreamFault::Server { .. }));
    let UpstreamFault::Client(api) = unnamed(413) else {
        panic!("a 413 is the client's");
    };
    assert_eq!(api.status, 413);
}

#[test]
fn stream_exceptions_in_camel_case_are_classed_like_http_ones() {
    let stream = |name: &str, message: &str| {
        BedrockError {
            name: name.into(),
            message: message.into(),
        }
        .stream_error()
    };
    let throttled = stream("throttlingException", "slow down");
    assert_eq!(
        (throttled.status, throttled.code.as_deref()),
        (429, Some("rate_limit_exceeded"))
    );
    let invalid = stream("validationException", "bad");
    assert_eq!((invalid.status, invalid.message.as_str()), (400, "bad"));
    let failed = stream("internalServerException", "boom");
    assert_eq!(failed.code.as_deref(), Some("upstream_error"));
    assert!(failed.message.contains("internalServerException: boom"));
    let denied = stream(
        "accessDeniedException",
        "User arn:aws:iam::1:user/x is not authorized",
    );
    assert_eq!(denied.code.as_deref(), Some("upstream_error"));
    assert!(
        !denied.message.contains("arn:aws"),
        "a refusal's words are for the log"
    );
    let timeout = stream("modelTimeoutException", "");
    assert_eq!(timeout.code.as_deref(), Some("upstream_timeout"));
}
