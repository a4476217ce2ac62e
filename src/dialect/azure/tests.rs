//! Golden tests for the Azure dialect: the real Azure recordings in
//! `../shared/vectors/` (envoy-ai-gateway `azure-chat-basic.yaml`, vercel-ai
//! `azure-model-router.1.chunks.txt`) and Azure's documented error shapes.

use bytes::Bytes;

use super::*;
use crate::config::{self, Config};
use crate::dialect::vectors;
use crate::dialect::ClientEvent;

/// A config with one Azure provider and `targets` (YAML flow mappings) for model `m`.
fn config(endpoint: &str, api_version: &str, targets: &[&str]) -> Config {
    let targets: String = targets.iter().map(|t| format!("      - {t}\n")).collect();
    let text = format!(
        "keys:\n  - {{ name: app, key: sk-virtual-1 }}\nproviders:\n  az:\n    type: azure\n    endpoint: {endpoint}\n    api_key: azure-secret-key\n    api_version: \"{api_version}\"\nmodels:\n  m:\n    targets:\n{targets}"
    );
    config::parse(&text, "test.yaml").unwrap()
}

/// One Azure target, for the translator.
fn target() -> std::sync::Arc<Target> {
    config(
        "https://contoso.openai.azure.com",
        "2024-10-21",
        &["{ provider: az, deployment: d }"],
    )
    .models["m"]
        .targets[0]
        .clone()
}

fn chat(body: &str) -> LlmRequest {
    LlmRequest::parse(Operation::ChatCompletions, Bytes::from(body.to_string())).unwrap()
}

fn header<'a>(h: &'a RequestHeader, name: &str) -> Option<&'a str> {
    h.headers.get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn the_recorded_request_is_rebuilt_from_an_openai_request() {
    let recorded = vectors::cassette("azure-chat-basic.yaml");
    let version = recorded.form["api-version"][0].as_str().unwrap();
    let resource = format!("https://{}", recorded.host);
    let config = config(
        &resource,
        version,
        &["{ provider: az, deployment: gpt-5-nano }"],
    );
    let target = &config.models["m"].targets[0];
    // The app names the public model `m`; everything else is the recorded body.
    let mut app_body: serde_json::Value = serde_json::from_str(&recorded.request_body).unwrap();
    app_body["model"] = "m".into();
    let request = chat(&app_body.to_string());

    let sent = Azure.encode(&request, target, "req-1").unwrap();

    let url = format!(
        "https://{}{}",
        header(&sent.header, "host").unwrap(),
        sent.header.uri
    );
    assert_eq!(url, format!("{}?api-version={version}", recorded.url));
    assert_eq!(sent.header.method, "POST");
    assert_eq!(header(&sent.header, "api-key"), Some("azure-secret-key"));
    assert_eq!(header(&sent.header, "authorization"), None);
    assert_eq!(header(&sent.header, "x-request-id"), Some("req-1"));
    let sent_body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    let recorded_body: serde_json::Value = serde_json::from_str(&recorded.request_body).unwrap();
    assert_eq!(sent_body, recorded_body);
    assert_eq!(
        header(&sent.header, "content-length"),
        Some(sent.body.len().to_string().as_str())
    );
}

#[test]
fn embeddings_go_to_the_embeddings_operation() {
    let config = config(
        "https://apim.example.com/aoai",
        "2024-10-21",
        &["{ provider: az, deployment: text-embedding-3-small }"],
    );
    let request = LlmRequest::parse(
        Operation::Embeddings,
        Bytes::from_static(br#"{"model":"m","input":"hi"}"#),
    )
    .unwrap();
    let sent = Azure
        .encode(&request, &config.models["m"].targets[0], "r")
        .unwrap();
    assert_eq!(
        sent.header.uri.to_string(),
        "/aoai/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21"
    );
    assert_eq!(
        &sent.body[..],
        br#"{"model":"text-embedding-3-small","input":"hi"}"#
    );
}

#[test]
fn a_target_may_override_the_api_version_and_the_body_follows_it() {
    let config = config(
        "https://x.openai.azure.com",
        "2025-04-01-preview",
        &[r#"{ provider: az, deployment: d, api_version: "2024-10-21" }"#],
    );
    let target = &config.models["m"].targets[0];
    assert_eq!(target.id, "az/d");
    let request = chat(
        r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    let sent = Azure.encode(&request, target, "r").unwrap();
    assert_eq!(
        sent.header.uri.to_string(),
        "/openai/deployments/d/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(header(&sent.header, "accept"), Some("text/event-stream"));
    assert_eq!(
        &sent.body[..],
        br#"{"model":"d","messages":[],"stream":true}"#
    );
}

#[test]
fn stream_usage_is_asked_for_only_where_the_api_version_takes_it() {
    let request = chat(r#"{"model":"m","messages":[],"stream":true}"#);
    for (version, body) in [
        (
            "2024-10-21",
            &br#"{"model":"d","messages":[],"stream":true}"#[..],
        ),
        (
            "2025-04-01-preview",
            br#"{"stream_options":{"include_usage":true},"model":"d","messages":[],"stream":true}"#,
        ),
    ] {
        let config = config(
            "https://x.openai.azure.com",
            version,
            &["{ provider: az, deployment: d }"],
        );
        let sent = Azure
            .encode(&request, &config.models["m"].targets[0], "r")
            .unwrap();
        assert_eq!(&sent.body[..], body, "{version}");
    }
}

#[test]
fn a_field_the_api_version_refuses_is_a_400_before_anything_is_sent() {
    let config = config(
        "https://x.openai.azure.com",
        "2024-10-21",
        &["{ provider: az, deployment: o3 }"],
    );
    let request = chat(r#"{"model":"m","messages":[],"reasoning_effort":"high"}"#);
    let Err(error) = Azure.encode(&request, &config.models["m"].targets[0], "r") else {
        panic!("reasoning_effort must be refused on 2024-10-21");
    };
    assert_eq!(error.status, 400);
    assert_eq!(error.param.as_deref(), Some("reasoning_effort"));
}

#[test]
fn the_recorded_whole_answer_passes_unchanged_with_usage() {
    let recorded = vectors::cassette("azure-chat-basic.yaml");
    assert_eq!(recorded.status, 200);
    let request = chat(r#"{"model":"m","messages":[]}"#);
    let answer = Azure
        .translator(&request, &target(), "r1")
        .whole(Bytes::from(recorded.response_body.clone()))
        .unwrap();
    assert_eq!(answer.body, Bytes::from(recorded.response_body));
    let usage = answer.usage.unwrap();
    // From the recording: "prompt_tokens": 8, "completion_tokens": 271.
    assert_eq!((usage.input_tokens, usage.output_tokens), (8, 271));
}

#[test]
fn the_recorded_stream_loses_only_its_prompt_filter_chunk() {
    let lines = vectors::chunk_lines("openai-chat/azure-model-router.1.chunks.txt");
    // The recording's first chunk is Azure's prompt-filter annotation.
    assert!(lines[0].starts_with(r#"{"choices":[],"created":0,"id":"""#));
    let mut wire = String::new();
    for line in &lines {
        wire.push_str(&format!("data: {line}\n\n"));
    }
    wire.push_str("data: [DONE]\n\n");
    // The client that asked for usage gets the usage chunk; the one that did not
    // loses it (the gateway asked for it on its own behalf), but it is read.
    let asked = chat(
        r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    let not_asked = chat(r#"{"model":"m","messages":[],"stream":true}"#);
    for (request, piece) in [1, 17, 512, wire.len()]
        .into_iter()
        .flat_map(|piece| [(&asked, piece), (&not_asked, piece)])
    {
        let mut translator = Azure.translator(request, &target(), "r1");
        let mut events: Vec<ClientEvent> = Vec::new();
        for chunk in wire.as_bytes().chunks(piece) {
            translator.feed(chunk, &mut events).unwrap();
        }
        translator.finish(&mut events).unwrap();
        let got: Vec<Bytes> = events.iter().map(|e| e.bytes.clone()).collect();
        let sent = if request.include_usage {
            &lines[1..]
        } else {
            assert!(lines.last().unwrap().contains(r#""choices":[]"#));
            &lines[1..lines.len() - 1]
        };
        let mut expected: Vec<Bytes> = sent
            .iter()
            .map(|l| ClientEvent::data(l.as_bytes()))
            .collect();
        expected.push(ClientEvent::data(b"[DONE]"));
        assert_eq!(got, expected, "piece {piece}");
        // Role-only chunk first, then "Capital": content starts at the second event.
        assert!(!events[0].content);
        assert!(events[1].content);
        // Usage from the recording's last chunk: 15 prompt, 78 completion tokens.
        let usage = translator.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (15, 78));
    }
}

#[test]
fn async_filter_annotations_are_dropped_and_content_filter_endings_kept() {
    // Shapes from Azure's content-filtering documentation (PROVIDERS.md §2.4).
    let wire = concat!(
        r#"data: {"choices":[{"content_filter_results":{},"delta":{"content":"Hi"},"finish_reason":null,"index":0}],"created":1,"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk"}"#,
        "\n\n",
        r#"data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"content_filter_offsets":{"check_offset":0,"start_offset":0,"end_offset":2},"index":0,"finish_reason":null}],"created":0,"id":"","model":"","object":""}"#,
        "\n\n",
        r#"data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"content_filter","index":0}],"created":1,"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk"}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );
    let request = chat(r#"{"model":"m","messages":[],"stream":true}"#);
    let mut translator = Azure.translator(&request, &target(), "r1");
    let mut events = Vec::new();
    translator.feed(wire.as_bytes(), &mut events).unwrap();
    translator.finish(&mut events).unwrap();
    assert_eq!(events.len(), 3);
    assert!(events[0].content);
    assert!(
        String::from_utf8_lossy(&events[1].bytes).contains(r#""finish_reason":"content_filter""#)
    );
    assert!(events[2].done);
}

#[test]
fn a_content_filter_refusal_keeps_status_code_param_and_innererror() {
    // The documented prompt-filter 400 (PROVIDERS.md §2.5): `type` null, Azure extras.
    let body = br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"},"jailbreak":{"filtered":false,"detected":false}}}}}"#;
    let UpstreamFault::Client(error) = Azure.classify(400, &http::HeaderMap::new(), body) else {
        panic!("a content-filter 400 is the client's fault");
    };
    assert_eq!(error.status, 400);
    assert_eq!(error.kind, "invalid_request_error");
    assert_eq!(error.code.as_deref(), Some("content_filter"));
    assert_eq!(error.param.as_deref(), Some("prompt"));
    assert!(error.message.starts_with("The response was filtered"));
    let envelope: serde_json::Value = serde_json::from_slice(&error.body()).unwrap();
    assert_eq!(envelope["error"]["type"], "invalid_request_error");
    assert_eq!(
        envelope["error"]["innererror"]["code"],
        "ResponsibleAIPolicyViolation"
    );
    assert_eq!(
        envelope["error"]["innererror"]["content_filter_result"]["hate"]["severity"],
        "high"
    );
}

#[test]
fn a_token_rate_limit_429_reads_as_tokens() {
    let body = br#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-01-preview have exceeded token rate limit of your current AIServices S0 pricing tier. Please retry after 37 seconds."}}"#;
    let none = http::HeaderMap::new();
    assert_eq!(
        Azure.classify(429, &none, body),
        UpstreamFault::RateLimited { kind: "tokens" }
    );
    let requests = br#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded call rate limit."}}"#;
    assert_eq!(
        Azure.classify(429, &none, requests),
        UpstreamFault::RateLimited { kind: "requests" }
    );
}

#[test]
fn the_health_probe_lists_models_with_the_api_key() {
    let config = config(
        "https://contoso.openai.azure.com",
        "2024-10-21",
        &["{ provider: az, deployment: gpt-4o-prod }"],
    );
    let HealthProbe::Request(probe) = Azure.health_probe(&config.models["m"].targets[0]).unwrap()
    else {
        panic!("Azure is probed with a request");
    };
    assert_eq!(probe.method, "GET");
    assert_eq!(
        probe.uri.to_string(),
        "/openai/models?api-version=2024-10-21"
    );
    assert_eq!(header(&probe, "host"), Some("contoso.openai.azure.com"));
    assert_eq!(header(&probe, "api-key"), Some("azure-secret-key"));
    assert_eq!(header(&probe, "authorization"), None);
}
