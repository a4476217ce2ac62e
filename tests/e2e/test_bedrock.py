"""AWS Bedrock: the OpenAI SDK asks the gateway for models served by `bedrock`
providers, which the gateway translates to Converse / ConverseStream.

The fake Bedrock Runtimes (conftest `FakeBedrock`) verify every request's SigV4
signature independently with botocore (or its Bedrock API key) and refuse it as AWS
would otherwise; they answer with Converse bodies and ConverseStream bytes recorded
from the real service, chosen by a `[fake-bedrock:...]` marker in the last user
message. Expected values are copied by hand from the recordings (conftest
`BR_EXPECTED`, `BRS_*`; `test_bedrock_fake.py` checks them against the files).
"""

import base64
import json
import struct
import zlib

import openai
import pytest

from conftest import (
    ACCESS_LOG_KEYS,
    BEDROCK_ACCESS_KEY_ID,
    BEDROCK_APIKEY_PROVIDER,
    BEDROCK_API_KEY,
    BEDROCK_BAD_SECRET_PROVIDER,
    BEDROCK_CONVERSE_PATH,
    BEDROCK_IAM_PROVIDER,
    BEDROCK_MODEL_ID,
    BEDROCK_PROVIDER,
    BEDROCK_REGION,
    BEDROCK_SECRET,
    BEDROCK_SESSION_TOKEN,
    BEDROCK_STREAM_PATH,
    BEDROCK_WRONG_SECRET,
    BRS_CORRUPT,
    BRS_EXCEPTION,
    BRS_EXCEPTION_FIRST,
    BRS_EXCEPTION_PAYLOAD,
    BRS_FRAMES_BEFORE_BREAK,
    BRS_TEXT_PIECES,
    BRS_TEXT_USAGE,
    BRS_TOOL,
    BRS_TOOL_ID,
    BRS_TOOL_INPUT,
    BRS_TOOL_NAME,
    BRS_TOOL_TEXT,
    BRS_TOOL_USAGE,
    BRS_TRUNCATED,
    BR_CACHE,
    BR_EXPECTED,
    BR_MODEL,
    BR_MODEL_APIKEY,
    BR_MODEL_BAD_SECRET,
    BR_MODEL_ERRORS,
    BR_MODEL_ERRORS_TARGET,
    BR_MODEL_IAM,
    BR_TEXT_CONTENT,
    BR_TOOL,
    BR_TWO_TOOLS,
    BR_VALIDATION_MESSAGE,
    CONVERSE_REQUEST_MEMBERS,
    FULL_KEY,
    assert_no_secret,
    bedrock_marker,
    collect,
    new_request_id,
    parse_sigv4_authorization,
    read_until_error,
    with_request_id,
)

ERROR_KEYS = {"message", "type", "param", "code"}
TARGET = f"{BEDROCK_PROVIDER}/{BEDROCK_MODEL_ID}"  # the default target id
QUESTION = "How many r's are in strawberry?"

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city, e.g. Oslo"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": WEATHER_PARAMETERS}}
WEATHER_SPEC = {"toolSpec": {"name": "get_weather", "description": "Current weather in a city.",
                             "inputSchema": {"json": WEATHER_PARAMETERS}}}
# A function without `parameters` still needs a schema on Bedrock (PROVIDERS.md §4.1).
CITIES_TOOL = {"type": "function", "function": {
    "name": "list_cities", "description": "Cities the weather service knows."}}
CITIES_SPEC = {"toolSpec": {"name": "list_cities",
                            "description": "Cities the weather service knows.",
                            "inputSchema": {"json": {"type": "object", "properties": {}}}}}
COSINE_TOOL = {"type": "function", "function": {
    "name": "cosine", "description": "The cosine of x (radians).",
    "parameters": {"type": "object", "properties": {"x": {"type": "number"}},
                   "required": ["x"]}}}


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

def ask(marker: str | None, text: str = QUESTION) -> list[dict]:
    """One user message that makes the fake answer `marker` (None: the text answer)."""
    return [{"role": "user", "content": f"{bedrock_marker(marker)} {text}" if marker else text}]


def converse_user(text: str) -> dict:
    return {"role": "user", "content": [{"text": text}]}


def one_bedrock_request(fake, rid: str, path: str = BEDROCK_CONVERSE_PATH, *,
                        session_token: bool = True, api_key: bool = False):
    """The single request `rid` made to `fake`, checked for Bedrock's URL, auth and
    body shape. The fake already refused any request whose signature it could not
    verify; `auth_problem` says why it did."""
    got = fake.by_request_id(rid)
    assert len(got) == 1, (
        f"expected one Bedrock request with x-request-id {rid}, got {len(got)}; the fake's "
        f"last requests: {[(r.path, r.header('x-request-id')) for r in fake.received()[-5:]]}")
    up = got[0]
    assert up.method == "POST"
    # The raw request target: the model id is ONE path segment, `:` encoded as %3A.
    assert up.path == path
    assert up.auth_problem is None, f"the fake refused the request: {up.auth_problem}"
    assert up.header("content-type").startswith("application/json")
    assert up.header("accept-encoding") == "identity"
    assert int(up.header("content-length")) == len(up.body)
    if api_key:
        assert up.headers["authorization"] == [f"Bearer {BEDROCK_API_KEY}"]
        assert [n for n in up.headers if n.startswith("x-amz-")] == [], \
            "no SigV4 headers with a Bedrock API key"
    else:
        fields = parse_sigv4_authorization(up.header("authorization"))
        assert fields is not None, up.header("authorization")
        key_id, date, region, service, terminator = fields["Credential"].split("/")
        assert (key_id, region, service, terminator) == (
            BEDROCK_ACCESS_KEY_ID, BEDROCK_REGION, "bedrock", "aws4_request")
        assert up.header("x-amz-date").startswith(date)
        signed = fields["SignedHeaders"].split(";")
        assert {"host", "x-amz-date"} <= set(signed)
        if session_token:
            assert up.headers["x-amz-security-token"] == [BEDROCK_SESSION_TOKEN]
            assert "x-amz-security-token" in signed
        else:
            assert "x-amz-security-token" not in up.headers
            assert "x-amz-security-token" not in signed
    body = up.json
    assert isinstance(body, dict), up.body[:200]
    assert "model" not in body and "stream" not in body and "stream_options" not in body
    assert set(body) <= CONVERSE_REQUEST_MEMBERS, set(body) - CONVERSE_REQUEST_MEMBERS
    # Neither the app's virtual key nor an AWS secret is sent (the session token and
    # the API key are, where they belong).
    assert_no_secret(up.raw_text().replace(BEDROCK_SESSION_TOKEN, "<session token>")
                     .replace(BEDROCK_API_KEY, "<api key>"))
    return up


def finish_reasons(chunks) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks
            if c.choices and c.choices[0].finish_reason]


def envelope(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS, body
    return body["error"]


def assert_usage(usage, want) -> None:
    prompt = want.input_tokens + want.cache_read + want.cache_write
    assert usage.prompt_tokens == prompt
    assert usage.completion_tokens == want.output_tokens
    assert usage.total_tokens == prompt + want.output_tokens


def tiny_png() -> bytes:
    """A valid 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00\xff")) + chunk(b"IEND", b""))


def secrets_in_gateway_output(gateway) -> list[str]:
    output = "\n".join(gateway.stdout_lines()) + "\n" + gateway.stderr_text()
    return [name for name, secret in (
        ("secret access key", BEDROCK_SECRET), ("wrong secret access key", BEDROCK_WRONG_SECRET),
        ("session token", BEDROCK_SESSION_TOKEN), ("API key", BEDROCK_API_KEY),
        ("virtual key", FULL_KEY)) if secret in output]


# --------------------------------------------------------------------------------------
# Whole answers
# --------------------------------------------------------------------------------------

def test_chat_through_bedrock(bedrock_client, fake_bedrock):
    rid = new_request_id("br-chat")
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": QUESTION}]
    raw = bedrock_client.chat.completions.with_raw_response.create(
        model=BR_MODEL, messages=messages, max_tokens=300, temperature=0.5, top_p=0.875,
        stop="END", extra_headers={"x-request-id": rid})
    assert raw.status_code == 200
    assert raw.headers["x-request-id"] == rid
    assert raw.headers["x-switchyard-provider"] == BEDROCK_PROVIDER
    assert raw.headers["x-switchyard-attempts"] == "1"
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.headers["x-amzn-requestid"] == fake_bedrock.by_request_id(rid)[0].amzn_request_id
    assert_no_secret(raw.text + "\n" + "\n".join(f"{k}: {v}" for k, v in raw.headers.items()))

    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == BEDROCK_MODEL_ID  # the target's model id
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == BR_TEXT_CONTENT
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"  # end_turn
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens,
            completion.usage.total_tokens) == (22, 57, 79)

    up = one_bedrock_request(fake_bedrock, rid)
    assert up.json == {
        "messages": [converse_user(QUESTION)],
        "system": [{"text": "You are terse."}, {"text": "Answer in English."}],
        "inferenceConfig": {"maxTokens": 300, "temperature": 0.5, "topP": 0.875,
                            "stopSequences": ["END"]},
    }


def test_access_log_line_for_a_bedrock_request(bedrock_client, bedrock_gateway):
    rid = new_request_id("br-log")
    bedrock_client.chat.completions.create(model=BR_MODEL, messages=ask(None),
                                           extra_headers={"x-request-id": rid})
    line = bedrock_gateway.log_for(rid)
    assert set(line) == ACCESS_LOG_KEYS
    assert (line["model"], line["provider"], line["target"]) == (BR_MODEL, BEDROCK_PROVIDER,
                                                                 TARGET)
    assert (line["status"], line["attempts"], line["error"], line["stream"]) == (
        200, 1, None, False)
    assert (line["input_tokens"], line["output_tokens"]) == (22, 57)
    assert_no_secret(json.dumps(line))


def test_multi_turn_body_mapping(bedrock_client, fake_bedrock):
    rid = new_request_id("br-turns")
    messages = [{"role": "system", "content": "You count letters."},
                {"role": "user", "content": "Count the r's in 'carrot'."},
                {"role": "assistant", "content": "There are 2."},
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": QUESTION}]
    completion = bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=messages, max_completion_tokens=77, stop=["STOP", "END"],
        extra_headers={"x-request-id": rid})
    assert completion.choices[0].message.content == BR_TEXT_CONTENT
    up = one_bedrock_request(fake_bedrock, rid)
    assert up.json == {
        "messages": [converse_user("Count the r's in 'carrot'."),
                     {"role": "assistant", "content": [{"text": "There are 2."}]},
                     converse_user(QUESTION)],
        # system and developer messages, wherever they were, in order.
        "system": [{"text": "You count letters."}, {"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 77, "stopSequences": ["STOP", "END"]},
    }


def test_data_url_images_become_image_bytes(bedrock_client, fake_bedrock):
    png = base64.b64encode(tiny_png()).decode()
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64))).decode()
    rid = new_request_id("br-image")
    bedrock_client.chat.completions.create(
        model=BR_MODEL, extra_headers={"x-request-id": rid},
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in these images?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg}",
                                                "detail": "low"}}]}])
    up = one_bedrock_request(fake_bedrock, rid)
    assert up.json["messages"] == [{"role": "user", "content": [
        {"text": "What is in these images?"},
        {"image": {"format": "png", "source": {"bytes": png}}},
        {"image": {"format": "jpeg", "source": {"bytes": jpeg}}}]}]


def test_https_image_url_is_refused_before_anything_is_sent(bedrock_client, fake_bedrock,
                                                            bedrock_gateway):
    rid = new_request_id("br-image-url")
    with pytest.raises(openai.BadRequestError) as e:
        bedrock_client.chat.completions.create(
            model=BR_MODEL, extra_headers={"x-request-id": rid},
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    exc = e.value
    assert (exc.status_code, exc.type, exc.code) == (400, "invalid_request_error",
                                                     "unsupported_parameter")
    envelope(exc)
    assert exc.response.headers["x-request-id"] == rid
    assert fake_bedrock.by_request_id(rid) == [], "nothing reached Bedrock"
    line = bedrock_gateway.log_for(rid)
    assert (line["status"], line["attempts"]) == (400, 0)


@pytest.mark.parametrize("marker", sorted(BR_EXPECTED))
def test_converse_answers_map_to_openai(bedrock_client, fake_bedrock, marker):
    """Content, finish reason, tool calls and usage of each recorded answer."""
    want = BR_EXPECTED[marker]
    rid = new_request_id(f"br-answer-{marker}")
    completion = bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=ask(marker), extra_headers={"x-request-id": rid})
    one_bedrock_request(fake_bedrock, rid)
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == BEDROCK_MODEL_ID
    message = completion.choices[0].message
    if marker == BR_TWO_TOOLS:
        # Two text blocks around the tool uses: both, in order.
        first, second = want.content.split("|")
        assert first in message.content and second in message.content
        assert message.content.index(first) < message.content.index(second)
    else:
        assert message.content == want.content
    assert completion.choices[0].finish_reason == want.finish_reason
    calls = message.tool_calls or []
    assert [(c.id, c.type, c.function.name) for c in calls] == [
        (tool_id, "function", name) for tool_id, name, _ in want.tool_calls]
    assert [json.loads(c.function.arguments) for c in calls] == [
        tool_input for _, _, tool_input in want.tool_calls]
    assert (message.model_extra or {}).get("reasoning_content") == want.reasoning
    assert_usage(completion.usage, want)
    if want.cache_read:
        assert completion.usage.prompt_tokens_details.cached_tokens == want.cache_read


def test_cached_tokens_count_in_prompt_tokens(bedrock_client):
    # The derived answer: inputTokens 22, cacheRead 1024, cacheWrite 256, outputTokens 57.
    completion = bedrock_client.chat.completions.create(model=BR_MODEL, messages=ask(BR_CACHE))
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        22 + 1024 + 256, 57, 22 + 1024 + 256 + 57)
    assert usage.prompt_tokens_details.cached_tokens == 1024


# --------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("tool_choice, bedrock_choice", [
    ("auto", {"auto": {}}),
    ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
], ids=["auto", "required", "named"])
def test_tools_and_tool_choice(bedrock_client, fake_bedrock, tool_choice, bedrock_choice):
    rid = new_request_id("br-tool-choice")
    completion = bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=ask(BR_TOOL, "Weather in Seattle?"),
        tools=[WEATHER_TOOL, CITIES_TOOL], tool_choice=tool_choice,
        extra_headers={"x-request-id": rid})
    assert completion.choices[0].finish_reason == "tool_calls"
    up = one_bedrock_request(fake_bedrock, rid)
    assert up.json["toolConfig"] == {"tools": [WEATHER_SPEC, CITIES_SPEC],
                                     "toolChoice": bedrock_choice}


def test_tool_choice_none_without_tool_history_sends_no_tools(bedrock_client, fake_bedrock):
    rid = new_request_id("br-tool-none")
    completion = bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=ask(None), tools=[WEATHER_TOOL], tool_choice="none",
        extra_headers={"x-request-id": rid})
    assert completion.choices[0].message.content == BR_TEXT_CONTENT
    up = one_bedrock_request(fake_bedrock, rid)
    assert "toolConfig" not in up.json  # Converse has no toolChoice "none"


def test_tool_call_round_trip(bedrock_client, fake_bedrock):
    question = "What's the weather in SF? Then give me the JSON."
    first_messages = ask(BR_TWO_TOOLS, question)
    rid = new_request_id("br-tools-1")
    completion = bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=first_messages, tools=[WEATHER_TOOL], tool_choice="auto",
        extra_headers={"x-request-id": rid})
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("tool-1", "get-weather", {"location": "SF"}),
        ("json-tool-id", "json", {"result": "data"})]
    up = one_bedrock_request(fake_bedrock, rid)
    assert up.json["toolConfig"] == {"tools": [WEATHER_SPEC], "toolChoice": {"auto": {}}}

    # Second turn: the assistant's tool calls, then one `tool` message per call.
    rid = new_request_id("br-tools-2")
    assistant = {"role": "assistant", "content": None, "tool_calls": [
        {"id": c.id, "type": "function",
         "function": {"name": c.function.name, "arguments": c.function.arguments}}
        for c in calls]}
    results = [{"role": "tool", "tool_call_id": "tool-1", "content": "16°C and foggy"},
               {"role": "tool", "tool_call_id": "json-tool-id", "content": '{"ok": true}'}]
    completion = bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=first_messages + [assistant] + results, tools=[WEATHER_TOOL],
        extra_headers={"x-request-id": rid})
    assert completion.choices[0].message.content == BR_TEXT_CONTENT
    assert completion.choices[0].finish_reason == "stop"

    up = one_bedrock_request(fake_bedrock, rid)
    sent = up.json["messages"]
    assert len(sent) == 3, sent
    assert sent[0] == converse_user(first_messages[0]["content"])
    assert sent[1] == {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "tool-1", "name": "get-weather", "input": {"location": "SF"}}},
        {"toolUse": {"toolUseId": "json-tool-id", "name": "json", "input": {"result": "data"}}},
    ]}
    # Both results in ONE user turn, in order.
    assert sent[2]["role"] == "user"
    blocks = [b["toolResult"] for b in sent[2]["content"]]
    assert [b.get("status", "success") for b in blocks] == ["success", "success"]
    assert [{k: v for k, v in b.items() if k != "status"} for b in blocks] == [
        {"toolUseId": "tool-1", "content": [{"text": "16°C and foggy"}]},
        {"toolUseId": "json-tool-id", "content": [{"text": '{"ok": true}'}]}]
    assert len(sent[2]["content"]) == 2
    # Bedrock wants toolConfig whenever the history has tool use.
    assert up.json["toolConfig"]["tools"] == [WEATHER_SPEC]


# --------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------

def test_stream_through_bedrock_with_usage(bedrock_client, fake_bedrock, bedrock_gateway):
    rid = new_request_id("br-stream")
    raw = bedrock_client.chat.completions.with_raw_response.create(
        model=BR_MODEL, messages=ask(None), stream=True, stream_options={"include_usage": True},
        max_tokens=500, extra_headers={"x-request-id": rid})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-request-id"] == rid
    assert raw.headers["x-switchyard-provider"] == BEDROCK_PROVIDER
    pieces, chunks = collect(raw.parse())
    assert raw.headers["x-amzn-requestid"] == fake_bedrock.by_request_id(rid)[0].amzn_request_id

    assert pieces == BRS_TEXT_PIECES  # event by event, nothing merged or lost
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert len({c.created for c in chunks}) == 1
    assert all(c.model == BEDROCK_MODEL_ID for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = finish_reasons(chunks)
    assert finish == ["stop"]  # end_turn
    assert all(c.choices for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens,
            last.usage.total_tokens) == BRS_TEXT_USAGE
    assert all(c.usage is None for c in chunks[:-1])

    up = one_bedrock_request(fake_bedrock, rid, BEDROCK_STREAM_PATH)
    assert up.json == {"messages": [converse_user(QUESTION)],
                       "inferenceConfig": {"maxTokens": 500}}

    line = bedrock_gateway.log_for(rid)
    assert (line["status"], line["stream"], line["error"]) == (200, True, None)
    assert (line["input_tokens"], line["output_tokens"]) == BRS_TEXT_USAGE[:2]
    assert isinstance(line["ttft_ms"], (int, float)) and line["ttft_ms"] >= 0


def test_stream_without_include_usage_has_no_usage_chunk(bedrock_client, fake_bedrock):
    rid = new_request_id("br-stream-nousage")
    pieces, chunks = collect(bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=ask(None), stream=True, extra_headers={"x-request-id": rid}))
    assert "".join(pieces) == "".join(BRS_TEXT_PIECES)
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    one_bedrock_request(fake_bedrock, rid, BEDROCK_STREAM_PATH)


def test_stream_tool_use(bedrock_client, fake_bedrock):
    rid = new_request_id("br-stream-tool")
    pieces, chunks = collect(bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=ask(BRS_TOOL, "What is the cosine of 7?"), tools=[COSINE_TOOL],
        stream=True, stream_options={"include_usage": True}, extra_headers={"x-request-id": rid}))
    assert "".join(pieces) == BRS_TOOL_TEXT
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas, "no tool call deltas"
    assert {d.index for d in deltas} == {0}  # one call, one stable index
    first = deltas[0]
    assert (first.id, first.type, first.function.name) == (BRS_TOOL_ID, "function",
                                                           BRS_TOOL_NAME)
    assert all(d.id is None and (d.function is None or d.function.name is None)
               for d in deltas[1:]), "id and name come once"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(arguments) == BRS_TOOL_INPUT
    finish = finish_reasons(chunks)
    assert finish == ["tool_calls"]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens,
            chunks[-1].usage.total_tokens) == BRS_TOOL_USAGE
    up = one_bedrock_request(fake_bedrock, rid, BEDROCK_STREAM_PATH)
    assert up.json["toolConfig"]["tools"][0]["toolSpec"]["name"] == "cosine"


def test_stream_exception_frame_after_content_is_an_error(bedrock_client, fake_bedrock,
                                                          bedrock_gateway):
    rid = new_request_id("br-stream-exception")
    stream = bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=ask(BRS_EXCEPTION), stream=True,
        extra_headers={"x-request-id": rid})
    pieces, error = read_until_error(stream)
    # What came before the exception frame reached the app, then the error.
    assert pieces == BRS_TEXT_PIECES[:BRS_FRAMES_BEFORE_BREAK - 1]
    assert set(error.body) == ERROR_KEYS, error.body
    assert BRS_EXCEPTION_PAYLOAD["message"] in error.message  # Bedrock's words are kept
    assert_no_secret(json.dumps(error.body))
    one_bedrock_request(fake_bedrock, rid, BEDROCK_STREAM_PATH)
    line = bedrock_gateway.log_for(rid)
    assert line["stream"] is True and line["error"] is not None


def test_stream_that_starts_with_an_exception_frame_is_an_error(bedrock_client, fake_bedrock):
    rid = new_request_id("br-stream-exception-first")
    with pytest.raises(openai.APIError) as e:
        list(bedrock_client.chat.completions.create(
            model=BR_MODEL, messages=ask(BRS_EXCEPTION_FIRST), stream=True,
            extra_headers={"x-request-id": rid}))
    assert not isinstance(e.value, openai.APIConnectionError), repr(e.value)
    if isinstance(e.value, openai.APIStatusError):  # refused before the stream started
        assert e.value.status_code == 502
        assert e.value.code == "upstream_error"
    one_bedrock_request(fake_bedrock, rid, BEDROCK_STREAM_PATH)


@pytest.mark.parametrize("marker", [BRS_TRUNCATED, BRS_CORRUPT])
def test_broken_event_stream_is_an_error(bedrock_client, fake_bedrock, bedrock_gateway, marker):
    """A frame cut off (the HTTP body still ends cleanly) or failing its CRC: the app
    gets an error, after exactly the content of the intact frames before it."""
    rid = new_request_id(f"br-{marker}")
    stream = bedrock_client.chat.completions.create(
        model=BR_MODEL, messages=ask(marker), stream=True, extra_headers={"x-request-id": rid})
    pieces, error = read_until_error(stream)
    assert pieces == BRS_TEXT_PIECES[:BRS_FRAMES_BEFORE_BREAK - 1]
    assert set(error.body) == ERROR_KEYS, error.body
    one_bedrock_request(fake_bedrock, rid, BEDROCK_STREAM_PATH)
    assert bedrock_gateway.log_for(rid)["error"] is not None


# --------------------------------------------------------------------------------------
# Errors (PROVIDERS.md §4.4)
# --------------------------------------------------------------------------------------

# marker -> (SDK exception, status, error.type, error.code)
BEDROCK_ERROR_CASES = {
    "validation": (openai.BadRequestError, 400, "invalid_request_error", "invalid_request"),
    "throttling": (openai.RateLimitError, 429, "requests", "rate_limit_exceeded"),
    "not-ready": (openai.RateLimitError, 429, "requests", "rate_limit_exceeded"),
    "quota": (openai.RateLimitError, 429, "insufficient_quota", "insufficient_quota"),
    "access-denied": (openai.InternalServerError, 502, "server_error", "upstream_auth_failed"),
    "not-found": (openai.InternalServerError, 502, "server_error", "upstream_model_not_found"),
    "model-timeout": (openai.InternalServerError, 504, "server_error", "upstream_timeout"),
    "model-error": (openai.InternalServerError, 502, "server_error", "upstream_error"),
    "internal": (openai.InternalServerError, 502, "server_error", "upstream_error"),
    "unavailable": (openai.InternalServerError, 502, "server_error", "upstream_error"),
}


@pytest.mark.parametrize("marker", list(BEDROCK_ERROR_CASES))
def test_bedrock_errors_map_to_openai_errors(bedrock_client, fake_bedrock, bedrock_gateway,
                                             marker):
    exc_class, status, error_type, code = BEDROCK_ERROR_CASES[marker]
    rid = new_request_id(f"br-err-{marker}")
    with pytest.raises(exc_class) as e:
        bedrock_client.chat.completions.create(model=BR_MODEL_ERRORS, messages=ask(marker),
                                               extra_headers={"x-request-id": rid})
    exc = e.value
    assert (exc.status_code, exc.type, exc.code) == (status, error_type, code)
    err = envelope(exc)
    if marker == "validation":
        # The client's fault: Bedrock's words, then the id that finds the log line.
        assert err["message"] == with_request_id(BR_VALIDATION_MESSAGE, rid)
    headers = exc.response.headers
    assert headers["x-request-id"] == rid
    assert headers["x-switchyard-provider"] == BEDROCK_PROVIDER
    if code == "rate_limit_exceeded":  # §4.4: a wait to honour (Bedrock names none)
        assert int(headers["retry-after"]) >= 1
        assert int(headers["retry-after-ms"]) >= 1
    assert_no_secret(exc.response.text + "\n"
                     + "\n".join(f"{k}: {v}" for k, v in headers.items()))
    one_bedrock_request(fake_bedrock, rid)  # one target: one try
    line = bedrock_gateway.log_for(rid)
    assert (line["status"], line["error"]) == (status, code)
    assert line["target"] == BR_MODEL_ERRORS_TARGET


@pytest.mark.parametrize("marker", ["validation", "throttling", "internal"])
def test_bedrock_errors_on_a_stream_request(bedrock_client, fake_bedrock, marker):
    """ConverseStream refused with an HTTP error: the same answer as without stream."""
    exc_class, status, _, code = BEDROCK_ERROR_CASES[marker]
    rid = new_request_id(f"br-stream-err-{marker}")
    with pytest.raises(exc_class) as e:
        list(bedrock_client.chat.completions.create(
            model=BR_MODEL_ERRORS, messages=ask(marker), stream=True,
            extra_headers={"x-request-id": rid}))
    assert (e.value.status_code, e.value.code) == (status, code)
    envelope(e.value)
    one_bedrock_request(fake_bedrock, rid, BEDROCK_STREAM_PATH)


def test_wrong_secret_is_refused_by_bedrock_and_becomes_502(bedrock_client, fake_bedrock,
                                                             bedrock_gateway):
    """The fake's verifier, not the gateway, decides: the signature made with the
    wrong secret does not verify, Bedrock answers 403 InvalidSignatureException
    (whose message quotes the canonical request, session token included), and the
    app gets 502 upstream_auth_failed with no secret in sight."""
    rid = new_request_id("br-badsecret")
    with pytest.raises(openai.InternalServerError) as e:
        bedrock_client.chat.completions.create(model=BR_MODEL_BAD_SECRET, messages=ask(None),
                                               extra_headers={"x-request-id": rid})
    exc = e.value
    assert (exc.status_code, exc.type, exc.code) == (502, "server_error", "upstream_auth_failed")
    envelope(exc)
    assert exc.response.headers["x-switchyard-provider"] == BEDROCK_BAD_SECRET_PROVIDER
    assert_no_secret(exc.response.text + "\n"
                     + "\n".join(f"{k}: {v}" for k, v in exc.response.headers.items()))

    (up,) = fake_bedrock.by_request_id(rid)
    assert up.path == BEDROCK_CONVERSE_PATH
    assert up.auth_problem is not None and up.auth_problem.startswith(
        "InvalidSignatureException: signature mismatch"), up.auth_problem
    assert up.headers["x-amz-security-token"] == [BEDROCK_SESSION_TOKEN]

    line = bedrock_gateway.log_for(rid)
    assert (line["status"], line["error"], line["attempts"]) == (502, "upstream_auth_failed", 1)
    assert line["target"] == f"{BEDROCK_BAD_SECRET_PROVIDER}/{BEDROCK_MODEL_ID}"
    assert secrets_in_gateway_output(bedrock_gateway) == []


# --------------------------------------------------------------------------------------
# Other credentials
# --------------------------------------------------------------------------------------

def test_long_term_access_key_sends_no_session_token(bedrock_client, fake_bedrock_iam):
    rid = new_request_id("br-iam")
    raw = bedrock_client.chat.completions.with_raw_response.create(
        model=BR_MODEL_IAM, messages=ask(None), extra_headers={"x-request-id": rid})
    assert raw.headers["x-switchyard-provider"] == BEDROCK_IAM_PROVIDER
    assert raw.parse().choices[0].message.content == BR_TEXT_CONTENT
    one_bedrock_request(fake_bedrock_iam, rid, session_token=False)

    rid = new_request_id("br-iam-stream")
    pieces, _ = collect(bedrock_client.chat.completions.create(
        model=BR_MODEL_IAM, messages=ask(None), stream=True, extra_headers={"x-request-id": rid}))
    assert pieces == BRS_TEXT_PIECES
    one_bedrock_request(fake_bedrock_iam, rid, BEDROCK_STREAM_PATH, session_token=False)


def test_bedrock_api_key_is_sent_as_bearer(bedrock_client, fake_bedrock_apikey):
    rid = new_request_id("br-apikey")
    raw = bedrock_client.chat.completions.with_raw_response.create(
        model=BR_MODEL_APIKEY, messages=ask(None), extra_headers={"x-request-id": rid})
    assert raw.headers["x-switchyard-provider"] == BEDROCK_APIKEY_PROVIDER
    assert raw.parse().choices[0].message.content == BR_TEXT_CONTENT
    assert BEDROCK_API_KEY not in raw.text
    up = one_bedrock_request(fake_bedrock_apikey, rid, api_key=True)
    assert FULL_KEY not in up.raw_text()

    rid = new_request_id("br-apikey-stream")
    pieces, _ = collect(bedrock_client.chat.completions.create(
        model=BR_MODEL_APIKEY, messages=ask(None), stream=True,
        extra_headers={"x-request-id": rid}))
    assert pieces == BRS_TEXT_PIECES
    one_bedrock_request(fake_bedrock_apikey, rid, BEDROCK_STREAM_PATH, api_key=True)


def test_fake_bedrocks_saw_nothing_a_gateway_must_not_send(bedrock_client, bedrock_gateway,
                                                           fake_bedrock, fake_bedrock_iam,
                                                           fake_bedrock_apikey):
    """Last in this file, so it sees the others' requests too: every request the
    gateway made was accepted (except the wrong-secret provider's), no fake noted a
    violation, and no credential is in the gateway's output."""
    bedrock_client.chat.completions.create(model=BR_MODEL, messages=ask(None))
    for fake in (fake_bedrock, fake_bedrock_iam, fake_bedrock_apikey):
        assert fake.violations == []
        # Requests with an x-request-id came from the gateway (test_bedrock_fake.py
        # sends its own, some refused on purpose, without one).
        from_gateway = [r for r in fake.received() if r.header("x-request-id")]
        refused = [(r.header("x-request-id"), r.auth_problem) for r in from_gateway
                   if getattr(r, "auth_problem", None)
                   and not r.header("x-request-id").startswith("br-badsecret")]
        assert refused == []
        for r in from_gateway:
            assert FULL_KEY not in r.raw_text()
            assert BEDROCK_SECRET not in r.raw_text()
            assert BEDROCK_WRONG_SECRET not in r.raw_text()
    assert secrets_in_gateway_output(bedrock_gateway) == []
