"""Azure OpenAI, both ways.

Outbound: the OpenAI SDK asks the gateway for a model served by an `azure` provider;
the fake Azure resource (see conftest `FakeAzure`) checks the deployments URL,
`api-version` and `api-key`, and answers with recordings of the real service.

Inbound: the `AzureOpenAI` SDK calls the gateway's Azure-shaped endpoint,
`/openai/deployments/{model}/...?api-version=...`, for models of any provider.
"""

import json
import secrets
import urllib.error
import urllib.request

import openai
import pytest

from conftest import (
    ACCESS_LOG_KEYS,
    AZURE_APIM_PREFIX,
    AZURE_API_VERSION,
    AZURE_KEY,
    AZURE_LEGACY_VERSION,
    AZURE_PREVIEW_VERSION,
    AZURE_WRONG_KEY,
    AZ_ASYNC_ID,
    AZ_ASYNC_MODEL,
    AZ_ASYNC_PIECES,
    AZ_DEP_ASYNC_FILTER,
    AZ_DEP_BUSY,
    AZ_DEP_CHAT,
    AZ_DEP_CHAT_LEGACY,
    AZ_DEP_CHAT_PREVIEW,
    AZ_DEP_DELETED,
    AZ_DEP_EMBED,
    AZ_DEP_FILTERED,
    AZ_DEP_LATE_END,
    AZ_EMBED_REPORTED,
    AZ_FILTER_INNERERROR,
    AZ_FILTER_MESSAGE,
    AZ_RETRY_AFTER_MS,
    AZ_RETRY_AFTER_S,
    AZ_UNAUTHORIZED_MESSAGE,
    FULL_KEY,
    PROVIDER_KEY,
    RESTRICTED_KEY,
    UP_CHAT,
    UP_CHAT_REPORTED,
    assert_no_secret,
    azure_recordings,
    collect,
    fake_vector,
    make_azure_client,
    new_request_id,
    upstream_answer,
    with_request_id,
)

CHAT = [{"role": "user", "content": "What is the capital of Denmark?"}]
ERROR_KEYS = {"message", "type", "param", "code"}


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

def one_azure_request(fake_azure, rid: str, deployment: str, operation: str = "chat/completions",
                      *, api_version: str = AZURE_API_VERSION, prefix: str = "",
                      api_key: str = AZURE_KEY):
    """The single request `rid` made to the fake Azure, checked for Azure's URL and auth."""
    got = fake_azure.by_request_id(rid)
    assert len(got) == 1, f"expected one Azure request for {rid}, got {[r.path for r in got]}"
    up = got[0]
    assert up.method == "POST"
    assert up.url_path == f"{prefix}/openai/deployments/{deployment}/{operation}"
    assert up.query == {"api-version": [api_version]}, up.path
    assert up.headers.get("api-key") == [api_key]
    assert "authorization" not in up.headers, "Azure takes api-key, never Authorization"
    assert up.header("content-type").startswith("application/json")
    assert up.header("accept-encoding") == "identity"
    assert int(up.header("content-length")) == len(up.body)
    assert up.json["model"] == deployment  # the public name rewritten to the deployment
    # Neither the app's virtual key nor another provider's credential is sent.
    assert_no_secret(up.raw_text().replace(api_key, "<azure key>"))
    return up


def extra(model, name: str):
    """A field the SDK's types do not declare (Azure's additions), or None."""
    return (model.model_extra or {}).get(name)


def envelope_with_innererror(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS | {"innererror"}, body
    return body["error"]


def envelope(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS, body
    return body["error"]


def upstream_502(client, model: str, rid: str, code: str) -> openai.InternalServerError:
    """Asks for `model` and checks the gateway answered 502 `code` in the envelope."""
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model=model, messages=CHAT,
                                       extra_headers={"x-request-id": rid})
    exc = e.value
    assert exc.status_code == 502
    assert exc.code == code
    assert exc.type == "server_error"
    envelope(exc)
    return exc


def no_rate_limit_headers(headers) -> None:
    leaked = [h for h in headers.keys() if h.lower().startswith("x-ratelimit-")]
    assert leaked == [], f"upstream rate-limit state reached the app: {leaked}"


def http_post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of a plain POST; errors are answers too."""
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def sse_data(raw: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, in order."""
    out = []
    for event in raw.split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data: "):
                out.append(line[len(b"data: "):])
    return out



# --------------------------------------------------------------------------------------
# Outbound: the OpenAI SDK, a model served by Azure
# --------------------------------------------------------------------------------------

def test_chat_through_azure_deployment(client, fake_azure):
    rec = azure_recordings()
    rid = new_request_id("az-chat")
    raw = client.chat.completions.with_raw_response.create(
        model="az-gpt", messages=CHAT, temperature=0.5, extra_headers={"x-request-id": rid})
    assert raw.status_code == 200
    assert raw.headers["x-request-id"] == rid
    assert raw.headers["x-switchyard-provider"] == "azure-east"
    assert raw.headers["x-switchyard-attempts"] == "1"
    assert raw.content == rec.chat_body, "a whole Azure answer passes through unchanged"

    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == rec.chat["model"]  # what Azure reported
    assert completion.choices[0].message.content == rec.chat_text
    assert completion.choices[0].finish_reason == "stop"
    assert extra(completion.choices[0], "content_filter_results") == {}
    assert extra(completion, "prompt_filter_results") == rec.chat["prompt_filter_results"]
    assert completion.usage.prompt_tokens == rec.chat["usage"]["prompt_tokens"]
    assert completion.usage.completion_tokens == rec.chat["usage"]["completion_tokens"]

    up = one_azure_request(fake_azure, rid, AZ_DEP_CHAT)
    assert up.json["messages"] == CHAT
    assert up.json["temperature"] == 0.5  # the rest of the body is kept
    assert "stream" not in up.json or up.json["stream"] is False


def test_access_log_line_for_an_azure_request(client, gateway):
    rec = azure_recordings()
    rid = new_request_id("az-log")
    client.chat.completions.create(model="az-gpt", messages=CHAT,
                                   extra_headers={"x-request-id": rid})
    line = gateway.log_for(rid)
    assert set(line) == ACCESS_LOG_KEYS
    assert line["model"] == "az-gpt"
    assert line["provider"] == "azure-east"
    assert line["target"] == f"azure-east/{AZ_DEP_CHAT}"  # <provider>/<deployment>
    assert (line["status"], line["attempts"], line["error"]) == (200, 1, None)
    assert line["stream"] is False
    assert line["input_tokens"] == rec.chat["usage"]["prompt_tokens"]
    assert line["output_tokens"] == rec.chat["usage"]["completion_tokens"]
    assert line["cost_usd"] is None  # no price configured
    assert_no_secret(json.dumps(line))


def test_stream_drops_azure_prompt_filter_chunk(client, fake_azure):
    rec = azure_recordings()
    rid = new_request_id("az-stream")
    raw = client.chat.completions.with_raw_response.create(
        model="az-gpt", messages=CHAT, stream=True, extra_headers={"x-request-id": rid})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-switchyard-provider"] == "azure-east"
    pieces, chunks = collect(raw.parse())

    assert len(chunks) == len(rec.answer_lines), "only the prompt-filter chunk is dropped"
    assert all(c.choices for c in chunks), "every chunk has choices[0]"
    assert all(c.id for c in chunks), "no chunk with an empty id reaches the app"
    assert "".join(pieces) == rec.stream_text == "Capital of Denmark."
    assert all(c.model == rec.stream_model for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    # Content chunks keep Azure's per-choice verdict.
    verdicts = [extra(c.choices[0], "content_filter_results") for c in chunks
                if c.choices[0].delta.content]
    assert len(verdicts) == len(pieces)
    assert all(v["hate"] == {"filtered": False, "severity": "safe"} for v in verdicts)
    assert all(c.usage is None for c in chunks)

    up = one_azure_request(fake_azure, rid, AZ_DEP_CHAT)
    assert up.json["stream"] is True
    assert up.header("accept") == "text/event-stream"


def test_stream_events_pass_through_byte_for_byte(gateway):
    """The kept events are the recorded bytes, in order, then [DONE]."""
    rec = azure_recordings()
    status, headers, body = http_post(
        gateway.base_url + "/chat/completions",
        {"model": "az-gpt", "messages": CHAT, "stream": True},
        {"authorization": f"Bearer {FULL_KEY}"})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert sse_data(body) == rec.answer_lines + [b"[DONE]"]


def test_stream_with_include_usage_on_ga_version_drops_stream_options(client, fake_azure, gateway):
    # 2024-10-21 (GA) predates `stream_options`: Azure would refuse it, so it is dropped.
    rec = azure_recordings()
    rid = new_request_id("az-stream-usage-ga")
    stream = client.chat.completions.create(
        model="az-gpt", messages=CHAT, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-request-id": rid})
    pieces, chunks = collect(stream)
    assert "".join(pieces) == rec.stream_text
    assert all(c.choices and c.id for c in chunks)

    up = one_azure_request(fake_azure, rid, AZ_DEP_CHAT)
    assert "stream_options" not in up.json
    assert up.json["stream"] is True
    assert up.json["messages"] == CHAT
    assert gateway.log_for(rid)["status"] == 200


def test_stream_usage_chunk_kept_on_preview_version(client, fake_azure, gateway):
    # The target overrides the provider's api-version with a preview that has stream_options.
    rec = azure_recordings()
    rid = new_request_id("az-stream-usage-preview")
    stream = client.chat.completions.create(
        model="az-gpt-preview", messages=CHAT, stream=True,
        stream_options={"include_usage": True}, extra_headers={"x-request-id": rid})
    pieces, chunks = collect(stream)
    assert "".join(pieces) == rec.stream_text
    assert all(c.id for c in chunks)
    # Every chunk has choices[0] except the final usage chunk.
    assert all(c.choices for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.prompt_tokens == rec.stream_usage["prompt_tokens"]
    assert last.usage.completion_tokens == rec.stream_usage["completion_tokens"]
    assert last.usage.total_tokens == rec.stream_usage["total_tokens"]
    assert all(c.usage is None for c in chunks[:-1])

    up = one_azure_request(fake_azure, rid, AZ_DEP_CHAT_PREVIEW,
                           api_version=AZURE_PREVIEW_VERSION)
    assert up.json["stream_options"] == {"include_usage": True}

    line = gateway.log_for(rid)
    assert line["target"] == f"azure-east/{AZ_DEP_CHAT_PREVIEW}"
    assert line["stream"] is True and line["status"] == 200
    assert line["input_tokens"] == rec.stream_usage["prompt_tokens"]
    assert line["output_tokens"] == rec.stream_usage["completion_tokens"]
    assert isinstance(line["ttft_ms"], (int, float)) and line["ttft_ms"] >= 0


def test_stream_read_to_done_is_logged_as_a_success(client, fake_azure, gateway):
    """The SDK closes the connection as soon as it has read `data: [DONE]`. When the
    upstream's body ends a little later (here 0.3 s; in the wild a later TCP segment
    or HTTP/2 frame), the answer was still complete: the access log must say 200
    and keep the usage, not 499 with no tokens."""
    rec = azure_recordings()
    rid = new_request_id("az-late-end")
    stream = client.chat.completions.create(
        model="az-gpt-late-end", messages=CHAT, stream=True,
        stream_options={"include_usage": True}, extra_headers={"x-request-id": rid})
    pieces, chunks = collect(stream)
    # The app got the whole answer, usage included.
    assert "".join(pieces) == rec.stream_text
    assert chunks[-1].usage.total_tokens == rec.stream_usage["total_tokens"]
    one_azure_request(fake_azure, rid, AZ_DEP_LATE_END, api_version=AZURE_PREVIEW_VERSION)

    line = gateway.log_for(rid)
    assert (line["status"], line["input_tokens"], line["output_tokens"]) == (
        200, rec.stream_usage["prompt_tokens"], rec.stream_usage["completion_tokens"]), line


def test_stream_drops_async_filter_annotations(client, fake_azure):
    rid = new_request_id("az-async")
    stream = client.chat.completions.create(
        model="az-gpt-async-filter", messages=CHAT, stream=True,
        extra_headers={"x-request-id": rid})
    pieces, chunks = collect(stream)
    assert pieces == AZ_ASYNC_PIECES  # event by event, nothing merged or lost
    # role chunk + one per piece + finish chunk; the prompt-filter chunk and the two
    # annotations (choices without delta or finish_reason, id "") are dropped.
    assert len(chunks) == 1 + len(AZ_ASYNC_PIECES) + 1
    assert all(c.id == AZ_ASYNC_ID and c.model == AZ_ASYNC_MODEL for c in chunks)
    assert all(c.choices and c.choices[0].delta is not None for c in chunks)
    assert all(extra(c.choices[0], "content_filter_offsets") is None for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks].count("stop") == 1
    assert chunks[-1].choices[0].finish_reason == "stop"
    one_azure_request(fake_azure, rid, AZ_DEP_ASYNC_FILTER)


def test_ga_version_body_rules(client, fake_azure):
    rid = new_request_id("az-body-ga")
    messages = [{"role": "developer", "content": "Answer in one word."},
                {"role": "user", "content": "Capital of Denmark?"}]
    client.chat.completions.create(
        model="az-gpt", messages=messages, max_completion_tokens=64, store=True,
        extra_headers={"x-request-id": rid})
    up = one_azure_request(fake_azure, rid, AZ_DEP_CHAT)
    assert up.json["max_completion_tokens"] == 64  # in GA since 2024-10-21
    assert "max_tokens" not in up.json
    assert "store" not in up.json  # preview-only: dropped
    # `developer` arrived in 2024-12-01-preview: sent as `system` before.
    assert up.json["messages"] == [{"role": "system", "content": "Answer in one word."},
                                   messages[1]]


def test_legacy_version_body_rules_behind_a_path_prefix(client, fake_azure):
    rid = new_request_id("az-body-legacy")
    client.chat.completions.create(
        model="az-gpt-legacy", messages=CHAT, max_completion_tokens=32,
        extra_headers={"x-request-id": rid})
    up = one_azure_request(fake_azure, rid, AZ_DEP_CHAT_LEGACY, prefix=AZURE_APIM_PREFIX,
                           api_version=AZURE_LEGACY_VERSION)
    # 2024-06-01 predates max_completion_tokens: renamed to max_tokens.
    assert up.json["max_tokens"] == 32
    assert "max_completion_tokens" not in up.json
    assert up.json["messages"] == CHAT


def test_reasoning_effort_refused_before_anything_is_sent(client, fake_azure, gateway):
    rid = new_request_id("az-reasoning")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="az-gpt", messages=CHAT, reasoning_effort="low",
                                       extra_headers={"x-request-id": rid})
    exc = e.value
    assert exc.status_code == 400
    assert exc.code == "unsupported_parameter"
    assert exc.param == "reasoning_effort"
    assert exc.type == "invalid_request_error"
    assert AZURE_API_VERSION in exc.message
    envelope(exc)
    assert fake_azure.by_request_id(rid) == [], "nothing reached Azure"
    line = gateway.log_for(rid)
    assert (line["status"], line["error"]) == (400, "unsupported_parameter")
    assert line["attempts"] == 0

    # A preview version that knows the field sends it unchanged.
    rid = new_request_id("az-reasoning-preview")
    client.chat.completions.create(model="az-gpt-preview", messages=CHAT,
                                   reasoning_effort="low", extra_headers={"x-request-id": rid})
    up = one_azure_request(fake_azure, rid, AZ_DEP_CHAT_PREVIEW,
                           api_version=AZURE_PREVIEW_VERSION)
    assert up.json["reasoning_effort"] == "low"


def test_embeddings_through_azure_deployment(client, fake_azure):
    rid = new_request_id("az-embed")
    raw = client.embeddings.with_raw_response.create(
        model="az-embed", input=["one", "two"], dimensions=6,
        extra_headers={"x-request-id": rid})  # the SDK asks for base64 and decodes it
    assert raw.headers["x-switchyard-provider"] == "azure-east"
    r = raw.parse()
    assert r.model == AZ_EMBED_REPORTED
    assert [d.index for d in r.data] == [0, 1]
    assert [d.embedding for d in r.data] == [fake_vector("one", 6), fake_vector("two", 6)]

    up = one_azure_request(fake_azure, rid, AZ_DEP_EMBED, "embeddings")
    assert up.json["input"] == ["one", "two"]
    assert up.json["dimensions"] == 6
    assert up.json["encoding_format"] == "base64"

    floats = client.embeddings.create(model="az-embed", input="one", dimensions=4,
                                      encoding_format="float")
    assert floats.data[0].embedding == fake_vector("one", 4)


def test_azure_429_is_rate_limit_error_with_retry_after(client, fake_azure, gateway):
    rid = new_request_id("az-429")
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="az-gpt-busy", messages=CHAT,
                                       extra_headers={"x-request-id": rid})
    exc = e.value
    assert exc.status_code == 429
    assert exc.code == "rate_limit_exceeded"
    assert exc.type == "tokens"  # Azure's message names the token rate limit
    envelope(exc)
    # The upstream said retry-after-ms 1500 and retry-after 2: milliseconds win.
    assert exc.response.headers["retry-after-ms"] == AZ_RETRY_AFTER_MS
    assert exc.response.headers["retry-after"] == AZ_RETRY_AFTER_S
    assert exc.response.headers["x-switchyard-provider"] == "azure-east"
    no_rate_limit_headers(exc.response.headers)
    one_azure_request(fake_azure, rid, AZ_DEP_BUSY)  # one try: the single target
    line = gateway.log_for(rid)
    assert (line["status"], line["error"], line["attempts"]) == (429, "rate_limit_exceeded", 1)


def test_azure_content_filter_400_keeps_innererror(client, fake_azure, gateway):
    rid = new_request_id("az-filtered")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="az-gpt-filtered", messages=CHAT,
                                       extra_headers={"x-request-id": rid})
    exc = e.value
    assert exc.status_code == 400
    assert exc.code == "content_filter"
    assert exc.param == "prompt"
    assert exc.type == "invalid_request_error"  # Azure's null type, in OpenAI's terms
    err = envelope_with_innererror(exc)
    assert err["message"] == with_request_id(AZ_FILTER_MESSAGE, rid)
    assert err["innererror"] == AZ_FILTER_INNERERROR  # kept as is
    assert exc.body["innererror"] == AZ_FILTER_INNERERROR  # what the SDK hands the app
    assert exc.response.headers["x-switchyard-provider"] == "azure-east"
    one_azure_request(fake_azure, rid, AZ_DEP_FILTERED)
    line = gateway.log_for(rid)
    assert (line["status"], line["error"]) == (400, "content_filter")


def test_azure_401_is_502_upstream_auth_failed(client, fake_azure, gateway):
    rid = new_request_id("az-401")
    exc = upstream_502(client, "az-gpt-badkey", rid, "upstream_auth_failed")
    assert AZ_UNAUTHORIZED_MESSAGE not in exc.response.text
    assert exc.response.headers["x-switchyard-provider"] == "azure-badkey"
    # The provider's own (wrong) key was sent, as api-key.
    one_azure_request(fake_azure, rid, AZ_DEP_CHAT, api_key=AZURE_WRONG_KEY)
    assert_no_secret(exc.response.text)
    line = gateway.log_for(rid)
    assert (line["status"], line["error"], line["attempts"]) == (502, "upstream_auth_failed", 1)
    assert line["target"] == f"azure-badkey/{AZ_DEP_CHAT}"


def test_azure_404_deployment_not_found_is_502(client, fake_azure, gateway):
    rid = new_request_id("az-404")
    upstream_502(client, "az-gpt-deleted", rid, "upstream_model_not_found")
    one_azure_request(fake_azure, rid, AZ_DEP_DELETED)
    line = gateway.log_for(rid)
    assert (line["status"], line["error"]) == (502, "upstream_model_not_found")


def test_azure_response_headers_pass_an_allow_list(client):
    raw = client.chat.completions.with_raw_response.create(model="az-gpt", messages=CHAT)
    no_rate_limit_headers(raw.headers)  # Azure sent x-ratelimit-limit-tokens: -1 and more
    assert "azureml-model-session" not in raw.headers
    assert raw.headers["x-ms-region"] == "East US 2"  # diagnostics pass
    assert raw.headers["apim-request-id"]
    assert raw.headers["x-upstream-request-id"]
    assert raw.headers["x-upstream-request-id"] != raw.headers["x-request-id"]

    with client.chat.completions.with_streaming_response.create(
            model="az-gpt", messages=CHAT, stream=True) as streamed:
        no_rate_limit_headers(streamed.headers)
        assert "".join(c.choices[0].delta.content or "" for c in streamed.parse()) \
            == azure_recordings().stream_text


# --------------------------------------------------------------------------------------
# Inbound: the AzureOpenAI SDK against the gateway
# --------------------------------------------------------------------------------------

def test_azure_sdk_chat_to_mock(azure_client, gateway):
    rid = new_request_id("in-az-chat")
    user = "Hello through the Azure door."
    raw = azure_client.chat.completions.with_raw_response.create(
        model="mock-chat", messages=[{"role": "user", "content": user}],
        extra_headers={"x-request-id": rid})
    assert raw.http_request.url.path == "/openai/deployments/mock-chat/chat/completions"
    assert raw.http_request.url.params["api-version"] == AZURE_API_VERSION
    assert raw.http_request.headers["api-key"] == FULL_KEY
    assert "authorization" not in raw.http_request.headers
    assert raw.status_code == 200
    assert raw.headers["x-switchyard-provider"] == "demo"
    completion = raw.parse()
    assert completion.choices[0].message.content == user  # the mock echoes
    assert completion.model == "mock-chat-1"
    line = gateway.log_for(rid)
    assert (line["model"], line["key"], line["status"]) == ("mock-chat", "e2e-full", 200)


def test_azure_sdk_stream_to_mock(azure_client):
    text = "Streaming through the deployments path, in several chunks."
    stream = azure_client.chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": text}], stream=True,
        stream_options={"include_usage": True})
    pieces, chunks = collect(stream)
    assert "".join(pieces) == text
    assert len(pieces) > 1
    assert all(c.choices for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_azure_sdk_embeddings_to_mock(azure_client, client):
    via_azure = azure_client.embeddings.with_raw_response.create(
        model="mock-embed", input=["alpha", "beta"], dimensions=8)
    assert via_azure.http_request.url.path == "/openai/deployments/mock-embed/embeddings"
    r = via_azure.parse()
    assert r.model == "mock-embed-1"
    assert [len(d.embedding) for d in r.data] == [8, 8]
    via_openai = client.embeddings.create(model="mock-embed", input=["alpha", "beta"],
                                          dimensions=8)
    assert [d.embedding for d in r.data] == [d.embedding for d in via_openai.data]


def test_azure_sdk_chat_to_openai_upstream(azure_client, fake_upstream):
    rid = new_request_id("in-az-up")
    prompt = "Routed from Azure's shape to OpenAI's."
    raw = azure_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}],
        extra_headers={"x-request-id": rid})
    assert raw.headers["x-switchyard-provider"] == "fake-openai"
    completion = raw.parse()
    assert completion.choices[0].message.content == upstream_answer(prompt)
    assert completion.model == UP_CHAT_REPORTED

    (up,) = fake_upstream.by_request_id(rid)
    assert up.path == "/v1/chat/completions"  # no api-version, no deployments path
    assert up.json["model"] == UP_CHAT
    assert up.headers["authorization"] == [f"Bearer {PROVIDER_KEY}"]
    assert "api-key" not in up.headers
    assert FULL_KEY not in up.raw_text()


def test_azure_sdk_stream_to_azure_target(fake_azure, gateway):
    """Azure in, Azure out: the upstream gets the target's api-version, not the app's."""
    rec = azure_recordings()
    with make_azure_client(gateway, FULL_KEY, api_version="2025-04-01-preview") as c:
        rid = new_request_id("in-az-out-az")
        stream = c.chat.completions.create(model="az-gpt", messages=CHAT, stream=True,
                                           extra_headers={"x-request-id": rid})
        pieces, chunks = collect(stream)
    assert "".join(pieces) == rec.stream_text
    assert all(c.choices and c.id for c in chunks)
    one_azure_request(fake_azure, rid, AZ_DEP_CHAT, api_version=AZURE_API_VERSION)


def test_azure_sdk_embeddings_to_azure_target(azure_client, fake_azure):
    rid = new_request_id("in-az-embed")
    r = azure_client.embeddings.create(model="az-embed", input="three", dimensions=5,
                                       extra_headers={"x-request-id": rid})
    assert r.data[0].embedding == fake_vector("three", 5)
    one_azure_request(fake_azure, rid, AZ_DEP_EMBED, "embeddings")


def test_deployment_path_takes_the_model_from_the_url(gateway, fake_upstream):
    # Azure ignores `model` in the body: absent or different, the URL decides.
    url = (gateway.origin
           + f"/openai/deployments/gpt-4o/chat/completions?api-version={AZURE_API_VERSION}")
    for body in ({"messages": CHAT}, {"model": "mock-chat", "messages": CHAT}):
        rid = new_request_id("in-az-model")
        status, headers, raw = http_post(url, body, {"api-key": FULL_KEY, "x-request-id": rid})
        assert status == 200, raw
        assert headers["x-switchyard-provider"] == "fake-openai"
        (up,) = fake_upstream.by_request_id(rid)
        assert up.json["model"] == UP_CHAT


def test_deployment_path_without_api_version_is_400(gateway):
    status, _, raw = http_post(gateway.origin + "/openai/deployments/mock-chat/chat/completions",
                               {"messages": CHAT}, {"api-key": FULL_KEY})
    assert status == 400
    body = json.loads(raw)
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == "missing_field"
    assert body["error"]["param"] == "api-version"
    assert body["error"]["type"] == "invalid_request_error"
    # An empty value is no version either.
    status, _, raw = http_post(
        gateway.origin + "/openai/deployments/mock-chat/chat/completions?api-version=",
        {"messages": CHAT}, {"api-key": FULL_KEY})
    assert status == 400 and json.loads(raw)["error"]["param"] == "api-version"


def test_api_key_header_and_bearer_are_both_accepted(gateway):
    for bearer in (False, True):
        with make_azure_client(gateway, FULL_KEY, bearer=bearer) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="mock-chat", messages=[{"role": "user", "content": "auth"}])
        sent = raw.http_request.headers
        if bearer:
            assert sent["authorization"] == f"Bearer {FULL_KEY}" and "api-key" not in sent
        else:
            assert sent["api-key"] == FULL_KEY and "authorization" not in sent
        assert raw.status_code == 200
        assert raw.parse().choices[0].message.content == "auth"


def test_wrong_or_missing_key_on_deployment_path_is_401(gateway):
    wrong = "sk-wrong-" + secrets.token_hex(16)
    with make_azure_client(gateway, wrong) as c:
        with pytest.raises(openai.AuthenticationError) as e:
            c.chat.completions.create(model="mock-chat", messages=CHAT)
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"
    envelope(e.value)
    assert wrong not in e.value.response.text

    url = (gateway.origin
           + f"/openai/deployments/mock-chat/chat/completions?api-version={AZURE_API_VERSION}")
    status, _, raw = http_post(url, {"messages": CHAT}, {})
    assert status == 401
    assert json.loads(raw)["error"]["code"] == "invalid_api_key"
    assert "api-key" in json.loads(raw)["error"]["message"]  # says where the key goes


def test_deployment_path_unknown_and_forbidden_models(gateway, azure_client):
    with pytest.raises(openai.NotFoundError) as e:
        azure_client.chat.completions.create(model="no-such-deployment", messages=CHAT)
    assert e.value.code == "model_not_found"
    with make_azure_client(gateway, RESTRICTED_KEY) as restricted:
        with pytest.raises(openai.PermissionDeniedError) as e:
            restricted.chat.completions.create(model="az-gpt", messages=CHAT)
        assert e.value.code == "model_not_allowed"
        ok = restricted.chat.completions.create(model="mock-chat", messages=CHAT)
        assert ok.choices[0].message.content == CHAT[0]["content"]


def test_fake_azure_saw_nothing_a_gateway_must_not_send(client, fake_azure, gateway):
    """Last in this file, so it sees the others' requests too: every request Azure
    got had its URL shape, one api-version and an api-key, and no other credential;
    and no Azure key is in the gateway's output."""
    client.chat.completions.create(model="az-gpt", messages=CHAT)
    assert fake_azure.violations == []
    for up in fake_azure.received():
        assert "authorization" not in up.headers
        assert FULL_KEY not in up.raw_text() and RESTRICTED_KEY not in up.raw_text()
        assert PROVIDER_KEY not in up.raw_text()
    output = "\n".join(gateway.stdout_lines()) + "\n" + gateway.stderr_text()
    assert AZURE_KEY not in output and AZURE_WRONG_KEY not in output
