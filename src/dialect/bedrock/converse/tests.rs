//! OpenAI chat requests → Converse bodies, expected bodies written by hand from
//! `PROVIDERS.md` §3.3 and §4.1.

use serde_json::{json, Value};

use super::super::openai_request::ChatRequest;
use super::converse_request;
use crate::errors::ApiError;

const HAIKU_3: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn convert(request: Value, model: &str) -> Result<Value, ApiError> {
    convert_text(&request.to_string(), model)
}

/// For requests whose exact bytes matter (a `Value` sorts object keys).
fn convert_text(text: &str, model: &str) -> Result<Value, ApiError> {
    let chat: ChatRequest = serde_json::from_str(text).unwrap();
    let converse = converse_request(&chat, model)?;
    Ok(serde_json::to_value(&converse).unwrap())
}

fn refused(request: Value, model: &str) -> ApiError {
    match convert(request, model) {
        Ok(body) => panic!("expected a 400, got {body}"),
        Err(e) => e,
    }
}

#[test]
fn a_tool_using_conversation_maps_turn_by_turn() {
    let request = json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
            {"role": "user", "content": "Thanks. Which is warmer?"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}],
        "tool_choice": "auto",
        "max_tokens": 300,
        "max_completion_tokens": 200,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\nHuman:", ""],
        "seed": 7,
        "user": "u-1",
        "stream": true
    });
    assert_eq!(
        convert(request, HAIKU_3).unwrap(),
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]},
                {"role": "assistant", "content": [
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Rome"}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}},
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "24C"}]}},
                    {"text": "Thanks. Which is warmer?"}
                ]}
            ],
            "system": [{"text": "Be brief."}, {"text": "Use tools."}],
            "inferenceConfig": {"maxTokens": 200, "temperature": 0.2, "topP": 0.9, "stopSequences": ["\n\nHuman:"]},
            "toolConfig": {
                "tools": [{"toolSpec": {
                    "name": "get_weather", "description": "Current weather",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
                }}],
                "toolChoice": {"auto": {}}
            }
        })
    );
}

#[test]
fn a_data_url_image_passes_its_base64_through_and_web_urls_are_refused() {
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let request = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}"), "detail": "high"}}
    ]}]});
    assert_eq!(
        convert(request, HAIKU_3).unwrap()["messages"][0]["content"],
        json!([
            {"text": "What is this?"},
            {"image": {"format": "png", "source": {"bytes": png}}}
        ])
    );
    let web = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    ]}]});
    let error = refused(web, HAIKU_3);
    assert_eq!(error.status, 400);
    assert_eq!(
        error.param.as_deref(),
        Some("messages[0].content[0].image_url.url")
    );
    assert!(error.message.contains("cannot fetch images from URLs"));
    let tiff = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}
    ]}]});
    assert!(refused(tiff, HAIKU_3).message.contains("image/tiff"));
}

#[test]
fn tool_choice_maps_to_auto_any_tool_or_no_tool_config() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let with = |choice: Value| {
        convert(json!({"messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": choice}), HAIKU_3).unwrap()
    };
    assert_eq!(
        with(json!("required"))["toolConfig"]["toolChoice"],
        json!({"any": {}})
    );
    assert_eq!(
        with(json!({"type": "function", "function": {"name": "f"}}))["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "f"}})
    );
    assert_eq!(
        with(json!("auto"))["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"],
        json!({"json": {"type": "object", "properties": {}}}),
        "a function without parameters gets an empty object schema"
    );
    assert!(with(json!("none")).get("toolConfig").is_none());
    // With tool blocks in the history Converse needs the tools: sent without a choice.
    let history = json!({
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"}
        ],
        "tools": tools, "tool_choice": "none"
    });
    let body = convert(history, HAIKU_3).unwrap();
    assert_eq!(
        body["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
    );
    assert_eq!(
        body["messages"][1]["content"][0]["toolUse"]["input"],
        json!({})
    );
}

#[test]
fn structured_output_goes_to_output_config_for_models_that_take_it() {
    let request = r#"{"messages":[{"role":"user","content":"A city, as JSON."}],
        "response_format":{"type":"json_schema","json_schema":{"name":"city","description":"One city","strict":true,
        "schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}}}}"#;
    let body = convert_text(request, "us.anthropic.claude-sonnet-4-5-20250929-v1:0").unwrap();
    assert_eq!(
        body["outputConfig"],
        json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
            "schema": "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}},\"required\":[\"name\"]}",
            "name": "city",
            "description": "One city"
        }}}})
    );
    let Err(error) = convert_text(request, HAIKU_3) else {
        panic!("Claude 3 Haiku has no structured output");
    };
    assert_eq!(error.param.as_deref(), Some("response_format"));
    assert!(error.message.contains("does not support structured output"));
    let json_mode = json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}});
    assert!(refused(json_mode, HAIKU_3).message.contains("json_schema"));
}

#[test]
fn what_converse_cannot_express_is_refused_or_ignored_as_documented() {
    let base = |extra: Value| {
        let mut request = json!({"messages": [{"role": "user", "content": "hi"}]});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request
    };
    assert_eq!(
        refused(base(json!({"n": 2})), HAIKU_3).param.as_deref(),
        Some("n")
    );
    assert_eq!(
        refused(base(json!({"logprobs": true})), HAIKU_3)
            .param
            .as_deref(),
        Some("logprobs")
    );
    assert_eq!(
        refused(base(json!({"modalities": ["text", "audio"]})), HAIKU_3)
            .param
            .as_deref(),
        Some("modalities")
    );
    assert_eq!(
        refused(base(json!({"reasoning_effort": "high"})), HAIKU_3)
            .param
            .as_deref(),
        Some("reasoning_effort")
    );
    let gpt_oss = convert(
        base(json!({"reasoning_effort": "low"})),
        "openai.gpt-oss-120b-1:0",
    )
    .unwrap();
    assert_eq!(
        gpt_oss["additionalModelRequestFields"],
        json!({"reasoning_effort": "low"})
    );
    let ignored = convert(
        base(json!({"n": 1, "logprobs": false, "seed": 1, "logit_bias": {"50256": -100}, "frequency_penalty": 0.5,
                    "presence_penalty": 0.5, "user": "u", "metadata": {"a": "b"}, "store": true, "service_tier": "auto",
                    "parallel_tool_calls": false})),
        HAIKU_3,
    )
    .unwrap();
    assert_eq!(
        ignored,
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    );
}

#[test]
fn temperature_is_clamped_to_bedrocks_range_and_stop_may_be_a_string() {
    let body = convert(
        json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 1.7, "stop": "END", "max_tokens": 5}),
        HAIKU_3,
    )
    .unwrap();
    assert_eq!(
        body["inferenceConfig"],
        json!({"maxTokens": 5, "temperature": 1.0, "stopSequences": ["END"]})
    );
}

#[test]
fn empty_messages_add_nothing_and_same_roles_merge() {
    let body = convert(
        json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": null, "refusal": null}
        ]}),
        HAIKU_3,
    )
    .unwrap();
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}])
    );
}

#[test]
fn malformed_messages_get_a_400_naming_the_field() {
    let unknown_role = json!({"messages": [{"role": "function", "content": "x"}]});
    assert_eq!(
        refused(unknown_role, HAIKU_3).param.as_deref(),
        Some("messages[0].role")
    );
    let no_id = json!({"messages": [{"role": "tool", "content": "x"}]});
    assert_eq!(
        refused(no_id, HAIKU_3).param.as_deref(),
        Some("messages[0].tool_call_id")
    );
    let bad_arguments = json!({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    ]}]});
    assert_eq!(
        refused(bad_arguments, HAIKU_3).param.as_deref(),
        Some("messages[0].tool_calls[0].function.arguments")
    );
    let audio = json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]});
    assert_eq!(refused(audio, HAIKU_3).status, 400);
}

#[test]
fn blank_text_is_left_out_as_converse_refuses_it() {
    let body = convert(
        json!({"messages": [
            {"role": "system", "content": "  "},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "\n\n", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": " "}
        ], "tools": [{"type": "function", "function": {"name": "weather"}}]}),
        HAIKU_3,
    )
    .unwrap();
    assert!(body.get("system").is_none());
    assert_eq!(
        body["messages"][1]["content"],
        json!([{"toolUse": {"toolUseId": "c1", "name": "weather", "input": {}}}])
    );
    assert_eq!(
        body["messages"][2]["content"],
        json!([{"toolResult": {"toolUseId": "c1", "content": []}}])
    );
}

#[test]
fn a_conversation_opening_with_the_assistant_gets_a_user_turn_first() {
    let body = convert(
        json!({"messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Hi."}
        ]}),
        HAIKU_3,
    )
    .unwrap();
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"text": "(conversation start)"}]},
            {"role": "assistant", "content": [{"text": "Hello! How can I help?"}]},
            {"role": "user", "content": [{"text": "Hi."}]}
        ])
    );
}

#[test]
fn tool_history_without_tools_still_sends_the_tools_it_names() {
    let body = convert(
        json!({"messages": [
            {"role": "user", "content": "Weather in Paris, then summarise."},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lyon\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "tool", "tool_call_id": "c2", "content": "20C"},
            {"role": "user", "content": "Summarise."}
        ]}),
        HAIKU_3,
    )
    .unwrap();
    assert_eq!(
        body["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
    );
}

#[test]
fn llama_and_mistral_get_the_text_after_tool_results_inside_the_last_result() {
    let request = json!({"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "user", "content": "Warm enough?"}
    ], "tools": [{"type": "function", "function": {"name": "weather"}}]});
    for model in [
        "meta.llama3-1-70b-instruct-v1:0",
        "us.mistral.pixtral-large-2502-v1:0",
    ] {
        let body = convert(request.clone(), model).unwrap();
        assert_eq!(
            body["messages"][2],
            json!({"role": "user", "content": [
                {"toolResult": {"toolUseId": "c1", "content": [{"text": "18C"}, {"text": "Warm enough?"}]}}
            ]}),
            "{model}"
        );
    }
    let claude = convert(request, HAIKU_3).unwrap();
    assert_eq!(
        claude["messages"][2]["content"][1],
        json!({"text": "Warm enough?"})
    );
}

#[test]
fn inference_profile_prefixes_are_looked_through() {
    for model in [
        "us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "global.anthropic.claude-opus-4-5-20251101-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2",
    ] {
        let request = r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"}}}}"#;
        assert!(convert_text(request, model).is_ok(), "{model}");
    }
}
