"""Failover, seen through the OpenAI SDK.

A gateway of its own (`failover_gateway`) serves models with a failing primary
target (priority 1) and a secondary (priority 2). The primaries fail the ways real
upstreams do: a port that refuses connections, a 500, no answer before `first_byte`,
a stream cut off or stalled. The secondaries are the fake OpenAI upstream, the fake
Azure resource and the fake Bedrock Runtime (SigV4 checked), so a failover also
crosses dialects.

The contract: a try fails over while nothing was written to the client (a stream's
content-free events are held back until its first content event); once content
reached the client, a stall longer than `idle` or a break ends the stream with one
`data: {"error": ...}` event (`upstream_timeout` or `upstream_error`), never with
`[DONE]`, and without trying another target. When every try was throttled, the
client gets the 429 with the earliest `retry-after-ms`.

Every expected value is written here by hand, and every primary target has a
`name` of its own: the gateway keeps circuit and cooldown state per target id, so
no test's failures can open a circuit another test depends on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import openai
import pytest

from conftest import (
    AZ_DEP_BUSY,
    AZ_DEP_CHAT,
    AZURE_KEY,
    BEDROCK_ACCESS_KEY_ID,
    BEDROCK_MODEL_ID,
    BEDROCK_SECRET,
    BEDROCK_CONVERSE_PATH,
    BEDROCK_SESSION_TOKEN,
    BEDROCK_STREAM_PATH,
    BRS_TEXT_PIECES,
    BR_TEXT_CONTENT,
    FULL_KEY,
    MAX_REQUEST_BYTES,
    PROVIDER_KEY,
    ROUTING,
    UP_CHAT,
    UP_CUT_AFTER_CONTENT,
    UP_CUT_AFTER_ROLE,
    UP_HANG,
    UP_RATE_LIMITED,
    UP_SERVER_ERROR,
    UP_STALL_AFTER_CONTENT,
    UP_STALL_AFTER_HEADERS,
    UP_STALL_AFTER_ROLE,
    azure_provider,
    azure_recordings,
    bedrock_provider,
    collect,
    free_port,
    make_client,
    new_request_id,
    pingora_settings,
    read_until_error,
    start_on_free_ports,
)

QUESTION = "Which city is the capital of Denmark?"
CHAT = [{"role": "user", "content": QUESTION}]
ERROR_KEYS = {"message", "type", "param", "code"}
# Generous bounds for a 2-core machine running a debug build; the limits under
# test are 300ms, and a fake that is never given up on stays silent for 8s.
QUICK_S = 3.0
STALL_MIN_S = 0.3

# Providers of the failover gateway.
PRIMARY = "fo-primary"   # the fake OpenAI upstream: the failing targets
REFUSED = "fo-refused"   # a 127.0.0.1 port that refuses connections
OPENAI = "fo-openai"     # the fake OpenAI upstream again, as the secondary
AZURE = "fo-azure"       # the fake Azure resource
BEDROCK = "fo-bedrock"   # the fake Bedrock Runtime (STS credentials, SigV4 checked)

# How a primary fails -> (its provider, the upstream model that makes the fake fail).
FAILURES = {
    "refused": (REFUSED, UP_CHAT),
    "server-error": (PRIMARY, UP_SERVER_ERROR),
    "hang": (PRIMARY, UP_HANG),  # no header within first_byte (300ms)
}
# The secondaries, by dialect.
SECONDARIES = {
    "openai": {"provider": OPENAI, "model": UP_CHAT},
    "azure": {"provider": AZURE, "deployment": AZ_DEP_CHAT},
    "bedrock": {"provider": BEDROCK, "model": BEDROCK_MODEL_ID},
}
# What each secondary answers, written out (the fakes' answers, see conftest).
WHOLE_ANSWER = {
    "openai": "upstream echo: Which city is the capital of Denmark?",
    "azure": ("Hi there! How can I help today? I can answer questions, brainstorm ideas, "
              "write or edit text, explain concepts, help with coding, plan projects, "
              "translate languages, or just chat. What would you like to do? If you\u2019re "
              "not sure, tell me a topic you\u2019re curious about and I\u2019ll give you a "
              "quick rundown."),
    "bedrock": BR_TEXT_CONTENT,
}
STREAM_TEXT = {
    "openai": "Hello from the fake upstream.",
    "azure": "Capital of Denmark.",
    "bedrock": ("Don't worry, I'm here to help. It seems like you're testing my ability to "
                "respond appropriately. If you'd like to continue the test, I'm ready."),
}

# Streams whose primary sends content, then stalls or is cut off.
AFTER_CONTENT = {
    # case -> (model, upstream model, error code)
    "stall": ("fo-stall-after-content", UP_STALL_AFTER_CONTENT, "upstream_timeout"),
    "cut": ("fo-cut-after-content", UP_CUT_AFTER_CONTENT, "upstream_error"),
}
# Streams whose primary fails before its first content: after the stream's header
# (no event within first_byte, 300ms), or after the content-free role chunk (cut
# off, or no event within idle, 300ms).
BEFORE_CONTENT = {"stall-after-headers": UP_STALL_AFTER_HEADERS,
                  "cut-after-role": UP_CUT_AFTER_ROLE, "stall-after-role": UP_STALL_AFTER_ROLE}

# Every target throttled: retry-after-ms 2000, 350, then Azure's 1500.
ALL_429 = "fo-all-429"
EARLIEST_RETRY_AFTER_MS = "350"
EARLIEST_RETRY_AFTER_S = "1"


def failover_model(failure: str, secondary: str, stream: bool) -> str:
    return f"fo-{failure}-to-{secondary}-{'stream' if stream else 'whole'}"


def before_content_model(case: str, secondary: str) -> str:
    return f"fo-{case}-to-{secondary}"


def failover_gateway_config(upstream_base_url: str, azure_origin: str, bedrock_origin: str,
                            refused_port: int, workdir: Path) -> dict:
    def primary(model: str, provider: str, upstream_model: str) -> dict:
        # A name of its own: circuit and cooldown state are kept per target id.
        return {"provider": provider, "model": upstream_model, "name": f"{model}/primary",
                "priority": 1}

    def secondary(kind: str) -> dict:
        return dict(SECONDARIES[kind], priority=2)

    models: dict[str, dict] = {}
    for failure, (provider, upstream_model) in FAILURES.items():
        for kind in SECONDARIES:
            for stream in (False, True):
                name = failover_model(failure, kind, stream)
                models[name] = {"targets": [primary(name, provider, upstream_model),
                                            secondary(kind)],
                                "timeouts": {"first_byte": "300ms"}}
    for case, upstream_model in BEFORE_CONTENT.items():
        for kind in SECONDARIES:
            name = before_content_model(case, kind)
            models[name] = {"targets": [primary(name, PRIMARY, upstream_model), secondary(kind)],
                            "timeouts": {"first_byte": "300ms", "idle": "300ms"}}
    for name, upstream_model, _ in AFTER_CONTENT.values():
        models[name] = {"targets": [primary(name, PRIMARY, upstream_model), secondary("openai")],
                        "timeouts": {"idle": "300ms"}}
    for stream in (False, True):
        name = f"{ALL_429}-{'stream' if stream else 'whole'}"
        models[name] = {"targets": [
            {"provider": PRIMARY, "model": f"{UP_RATE_LIMITED}2000", "name": f"{name}/a",
             "priority": 1},
            {"provider": PRIMARY, "model": f"{UP_RATE_LIMITED}350", "name": f"{name}/b",
             "priority": 2},
            {"provider": AZURE, "deployment": AZ_DEP_BUSY, "name": f"{name}/c", "priority": 3},
        ]}
    # Fallbacks and retry.on.
    models["fo-backup"] = {"targets": [SECONDARIES["openai"]]}
    models["fo-with-fallback"] = {
        "targets": [primary("fo-with-fallback", PRIMARY, UP_SERVER_ERROR)],
        "fallbacks": ["fo-backup"]}
    models["fo-no-retry-on-5xx"] = {
        "targets": [primary("fo-no-retry-on-5xx", PRIMARY, UP_SERVER_ERROR), secondary("openai")],
        "retry": {"on": ["connect", "timeout"]}}
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "max_request_bytes": MAX_REQUEST_BYTES,
        "keys": [{"name": "e2e-full", "key": FULL_KEY}],
        "providers": {
            PRIMARY: {"type": "openai", "base_url": upstream_base_url, "api_key": PROVIDER_KEY},
            REFUSED: {"type": "openai", "base_url": f"http://127.0.0.1:{refused_port}/v1",
                      "api_key": PROVIDER_KEY},
            OPENAI: {"type": "openai", "base_url": upstream_base_url, "api_key": PROVIDER_KEY},
            AZURE: azure_provider(azure_origin, AZURE_KEY),
            BEDROCK: bedrock_provider(
                bedrock_origin, access_key_id=BEDROCK_ACCESS_KEY_ID,
                secret_access_key=BEDROCK_SECRET, session_token=BEDROCK_SESSION_TOKEN),
        },
        "models": models,
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
    }


# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def failover_gateway(start_gateway, fake_upstream, fake_azure, fake_bedrock, refused_port,
                     tmp_path_factory):
    """A gateway of its own: its failing targets never touch the shared gateway's."""
    return start_on_free_ports(start_gateway, tmp_path_factory, lambda workdir: (
        failover_gateway_config(fake_upstream.base_url, fake_azure.origin, fake_bedrock.origin,
                                refused_port, workdir)))


@pytest.fixture(scope="module")
def fo_client(failover_gateway) -> Iterator[openai.OpenAI]:
    c = make_client(failover_gateway, FULL_KEY)
    yield c
    c.close()


def upstream_models(fake, rid: str) -> list[str]:
    """The upstream model of each request `rid` made to an OpenAI fake, in order."""
    return [r.json["model"] for r in fake.by_request_id(rid)]


def roles(chunks) -> list[str]:
    return [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]


def finish_reasons(chunks) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks
            if c.choices and c.choices[0].finish_reason]


def openai_fake_saw(failure: str, secondary: str) -> list[str]:
    """The upstream models the fake OpenAI upstream gets for one request that fails
    over: the primary's (a refused port gets nothing), then the secondary's if it
    is the OpenAI one."""
    primary = [] if failure == "refused" else [FAILURES[failure][1]]
    return primary + ([UP_CHAT] if secondary == "openai" else [])


def assert_other_secondary_asked_once(kind: str, rid: str, stream: bool, fake_azure,
                                      fake_bedrock) -> None:
    """An Azure or Bedrock secondary got exactly one request for `rid`, and accepted
    its credentials."""
    if kind == "azure":
        (up,) = fake_azure.by_request_id(rid)
        assert up.url_path == f"/openai/deployments/{AZ_DEP_CHAT}/chat/completions"
        assert up.headers.get("api-key") == [AZURE_KEY]
    elif kind == "bedrock":
        (up,) = fake_bedrock.by_request_id(rid)
        assert up.path == (BEDROCK_STREAM_PATH if stream else BEDROCK_CONVERSE_PATH)
        assert up.auth_problem is None, f"the fake refused the request: {up.auth_problem}"


def assert_failed_over(failover_gateway, rid: str, provider: str) -> None:
    line = failover_gateway.log_for(rid)
    assert (line["status"], line["attempts"], line["provider"], line["error"]) == (
        200, 2, provider, None), line


# --------------------------------------------------------------------------------------
# After content: one error event, no failover
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", AFTER_CONTENT)
def test_stream_failing_after_content_raises_api_error_in_the_sdk(
        case, fo_client, failover_gateway, fake_upstream):
    """The upstream sends the role chunk and "Hello", then stalls (longer than
    `idle`, 300ms) or is cut off: the SDK yields "Hello", then raises APIError with
    the gateway's error event, soon; the secondary is never asked."""
    model, upstream_model, code = AFTER_CONTENT[case]
    rid = new_request_id(f"fo-{case}-after-content")
    started = time.monotonic()
    raw = fo_client.chat.completions.with_raw_response.create(
        model=model, messages=CHAT, stream=True, extra_headers={"x-request-id": rid})
    assert raw.headers["x-switchyard-attempts"] == "1"
    assert raw.headers["x-switchyard-provider"] == PRIMARY
    pieces, error = read_until_error(raw.parse())
    elapsed = time.monotonic() - started

    assert pieces == ["Hello"]
    assert type(error) is openai.APIError, repr(error)  # an error event in a 200 stream
    assert error.code == code
    assert error.type == "server_error"
    assert error.param is None
    assert isinstance(error.body, dict) and set(error.body) == ERROR_KEYS, error.body
    assert error.body["message"] == error.message and error.message
    if case == "stall":
        assert any(w in error.message.lower() for w in ("timeout", "timed out", "in time")), \
            error.message
        assert STALL_MIN_S <= elapsed < QUICK_S, elapsed
    else:
        assert elapsed < QUICK_S, elapsed

    assert upstream_models(fake_upstream, rid) == [upstream_model], "no failover after content"
    line = failover_gateway.log_for(rid)
    assert (line["status"], line["stream"], line["attempts"], line["error"]) == (
        200, True, 1, code), line


@pytest.mark.parametrize("case", AFTER_CONTENT)
def test_stream_failing_after_content_ends_with_one_error_event_and_no_done(
        case, fo_client, failover_gateway):
    """The same streams as SSE lines: the role chunk, the content chunk, exactly one
    error event, then the end of the answer: never `[DONE]`."""
    model, _, code = AFTER_CONTENT[case]
    rid = new_request_id(f"fo-{case}-after-content-raw")
    with fo_client.chat.completions.with_streaming_response.create(
            model=model, messages=CHAT, stream=True,
            extra_headers={"x-request-id": rid}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: "):] for line in response.iter_lines()
                if line.startswith("data: ")]

    assert "[DONE]" not in data, data
    assert len(data) == 3, data
    role, content, last = (json.loads(d) for d in data)
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert content["choices"][0]["delta"] == {"content": "Hello"}
    assert set(last) == {"error"}, last
    assert set(last["error"]) == ERROR_KEYS, last
    assert (last["error"]["type"], last["error"]["param"], last["error"]["code"]) == (
        "server_error", None, code)
    assert isinstance(last["error"]["message"], str) and last["error"]["message"]


# --------------------------------------------------------------------------------------
# Before anything was written: the secondary answers
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("secondary", SECONDARIES)
@pytest.mark.parametrize("failure", FAILURES)
def test_whole_answer_fails_over_to_the_secondary(failure, secondary, fo_client,
                                                  failover_gateway, fake_upstream, fake_azure,
                                                  fake_bedrock):
    """The primary refuses the connection, answers 500 or sends no header within
    `first_byte`: the secondary's answer reaches the SDK, named in the headers as
    the second attempt."""
    rid = new_request_id(f"fo-{failure}-{secondary}")
    started = time.monotonic()
    raw = fo_client.chat.completions.with_raw_response.create(
        model=failover_model(failure, secondary, False), messages=CHAT,
        extra_headers={"x-request-id": rid})
    elapsed = time.monotonic() - started

    assert raw.status_code == 200
    assert raw.headers["x-switchyard-attempts"] == "2"
    assert raw.headers["x-switchyard-provider"] == SECONDARIES[secondary]["provider"]
    completion = raw.parse()
    assert completion.choices[0].message.content == WHOLE_ANSWER[secondary]
    assert completion.choices[0].finish_reason == "stop"
    if secondary == "azure":
        assert raw.content == azure_recordings().chat_body  # passed through unchanged
    assert elapsed < QUICK_S, elapsed

    assert upstream_models(fake_upstream, rid) == openai_fake_saw(failure, secondary)
    assert_other_secondary_asked_once(secondary, rid, False, fake_azure, fake_bedrock)
    assert_failed_over(failover_gateway, rid, SECONDARIES[secondary]["provider"])


@pytest.mark.parametrize("secondary", SECONDARIES)
@pytest.mark.parametrize("failure", FAILURES)
def test_stream_fails_over_to_the_secondary(failure, secondary, fo_client, failover_gateway,
                                            fake_upstream, fake_azure, fake_bedrock):
    """The same failures on a stream request: the SDK reads the secondary's stream,
    complete (one role, every piece, one finish reason), and no error."""
    rid = new_request_id(f"fo-{failure}-{secondary}-stream")
    started = time.monotonic()
    raw = fo_client.chat.completions.with_raw_response.create(
        model=failover_model(failure, secondary, True), messages=CHAT, stream=True,
        extra_headers={"x-request-id": rid})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-switchyard-attempts"] == "2"
    assert raw.headers["x-switchyard-provider"] == SECONDARIES[secondary]["provider"]
    pieces, chunks = collect(raw.parse())  # raises if the stream carries an error
    elapsed = time.monotonic() - started

    assert "".join(pieces) == STREAM_TEXT[secondary]
    if secondary == "openai":
        assert pieces == ["Hello", " from", " the", " fake", " upstream."]
    if secondary == "bedrock":
        assert pieces == BRS_TEXT_PIECES
    assert roles(chunks) == ["assistant"]
    assert finish_reasons(chunks) == ["stop"]
    assert elapsed < QUICK_S, elapsed

    assert upstream_models(fake_upstream, rid) == openai_fake_saw(failure, secondary)
    assert_other_secondary_asked_once(secondary, rid, True, fake_azure, fake_bedrock)
    assert_failed_over(failover_gateway, rid, SECONDARIES[secondary]["provider"])


@pytest.mark.parametrize("secondary", SECONDARIES)
@pytest.mark.parametrize("case", BEFORE_CONTENT)
def test_stream_failing_before_content_fails_over_cleanly(case, secondary, fo_client,
                                                          failover_gateway, fake_upstream,
                                                          fake_azure, fake_bedrock):
    """The primary sends its stream's header and nothing more, or only the role
    chunk and then is cut off or stalls: the held role chunk is dropped, and the
    client sees one role and the secondary's whole answer, with no error."""
    rid = new_request_id(f"fo-{case}-{secondary}")
    started = time.monotonic()
    raw = fo_client.chat.completions.with_raw_response.create(
        model=before_content_model(case, secondary), messages=CHAT, stream=True,
        extra_headers={"x-request-id": rid})
    assert raw.headers["x-switchyard-attempts"] == "2"
    assert raw.headers["x-switchyard-provider"] == SECONDARIES[secondary]["provider"]
    pieces, chunks = collect(raw.parse())
    elapsed = time.monotonic() - started

    assert roles(chunks) == ["assistant"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(pieces) == STREAM_TEXT[secondary]
    assert finish_reasons(chunks) == ["stop"]
    if case.startswith("stall"):
        assert STALL_MIN_S <= elapsed < QUICK_S, elapsed
    else:
        assert elapsed < QUICK_S, elapsed

    assert upstream_models(fake_upstream, rid) == [BEFORE_CONTENT[case]] + (
        [UP_CHAT] if secondary == "openai" else [])
    assert_other_secondary_asked_once(secondary, rid, True, fake_azure, fake_bedrock)
    assert_failed_over(failover_gateway, rid, SECONDARIES[secondary]["provider"])


def test_fallback_model_answers_when_the_models_own_targets_failed(fo_client,
                                                                    failover_gateway,
                                                                    fake_upstream):
    """`fallbacks: [fo-backup]`: after the model's only target answered 500, the
    fallback model's target answers."""
    rid = new_request_id("fo-fallback")
    raw = fo_client.chat.completions.with_raw_response.create(
        model="fo-with-fallback", messages=CHAT, extra_headers={"x-request-id": rid})
    assert raw.headers["x-switchyard-attempts"] == "2"
    assert raw.headers["x-switchyard-provider"] == OPENAI
    assert raw.parse().choices[0].message.content == WHOLE_ANSWER["openai"]
    assert upstream_models(fake_upstream, rid) == [UP_SERVER_ERROR, UP_CHAT]
    line = failover_gateway.log_for(rid)
    assert line["model"] == "fo-with-fallback"  # the name the client asked for
    assert_failed_over(failover_gateway, rid, OPENAI)


def test_retry_on_without_5xx_answers_the_500_without_failover(fo_client, fake_upstream):
    """`retry: {on: [connect, timeout]}`: a 500 is the answer, the secondary is not
    asked."""
    rid = new_request_id("fo-no-retry")
    with pytest.raises(openai.InternalServerError) as e:
        fo_client.chat.completions.create(model="fo-no-retry-on-5xx", messages=CHAT,
                                          extra_headers={"x-request-id": rid})
    assert e.value.status_code == 502
    assert (e.value.code, e.value.type) == ("upstream_error", "server_error")
    assert e.value.response.headers["x-switchyard-attempts"] == "1"
    assert e.value.response.headers["x-switchyard-provider"] == PRIMARY
    assert upstream_models(fake_upstream, rid) == [UP_SERVER_ERROR]


# --------------------------------------------------------------------------------------
# Every target throttled
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_all_targets_429_is_rate_limit_error_with_the_earliest_retry_after(
        stream, fo_client, failover_gateway, fake_upstream, fake_azure):
    """Three targets answer 429 with retry-after-ms 2000, 350 and (Azure) 1500: the
    SDK raises RateLimitError, and the answer says to retry after 350ms."""
    rid = new_request_id(f"fo-429-{'stream' if stream else 'whole'}")
    extra = {"stream": True} if stream else {}
    with pytest.raises(openai.RateLimitError) as e:
        fo_client.chat.completions.create(model=f"{ALL_429}-{'stream' if stream else 'whole'}",
                                          messages=CHAT, extra_headers={"x-request-id": rid},
                                          **extra)
    exc = e.value
    assert exc.status_code == 429
    assert exc.code == "rate_limit_exceeded"
    headers = exc.response.headers
    assert headers["retry-after-ms"] == EARLIEST_RETRY_AFTER_MS
    assert headers["retry-after"] == EARLIEST_RETRY_AFTER_S
    assert headers["x-switchyard-attempts"] == "3"
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body

    assert upstream_models(fake_upstream, rid) == [f"{UP_RATE_LIMITED}2000",
                                                   f"{UP_RATE_LIMITED}350"]
    (azure,) = fake_azure.by_request_id(rid)
    assert azure.url_path == f"/openai/deployments/{AZ_DEP_BUSY}/chat/completions"
    line = failover_gateway.log_for(rid)
    assert (line["status"], line["attempts"], line["error"]) == (429, 3, "rate_limit_exceeded")
