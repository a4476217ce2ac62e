"""Non-streaming chat completions through the built-in mock and a fake OpenAI upstream."""

import math
import re

from conftest import (
    FULL_KEY,
    PROVIDER_KEY,
    RESTRICTED_KEY,
    UP_CHAT,
    UP_CHAT_REPORTED,
    UP_USAGE,
    assert_no_secret,
    new_request_id,
    upstream_answer,
)


def mock_tokens(text: str) -> int:
    """The mock's token count: characters / 4, rounded up, at least 1."""
    return max(1, math.ceil(len(text) / 4))


def test_chat_through_mock(client):
    system = "You are terse."
    user = "Say hello to the gateway, please."
    rid = new_request_id("chat-mock")
    raw = client.chat.completions.with_raw_response.create(
        model="mock-chat",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        extra_headers={"x-request-id": rid},
    )
    assert raw.http_request.url.path == "/v1/chat/completions"
    assert raw.status_code == 200
    assert raw.headers["x-request-id"] == rid
    assert raw.headers["x-switchyard-provider"] == "demo"
    assert raw.headers["x-switchyard-attempts"] == "1"
    assert float(raw.headers["x-switchyard-overhead-ms"]) >= 0
    assert raw.headers["content-type"].startswith("application/json")

    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "mock-chat-1"  # the target's model id
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == user  # the mock echoes the last user message
    assert choice.finish_reason == "stop"
    assert completion.usage.prompt_tokens == mock_tokens(system + user)
    assert completion.usage.completion_tokens == mock_tokens(user)
    assert completion.usage.total_tokens == mock_tokens(system + user) + mock_tokens(user)


def test_chat_through_mock_honours_max_tokens(client):
    completion = client.chat.completions.create(
        model="mock-chat",
        messages=[{"role": "user", "content": "abcdefghijklmnop"}],
        max_tokens=2,
    )
    assert completion.choices[0].message.content == "abcdefgh"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2


def test_chat_through_fake_openai_upstream(client, fake_upstream):
    rid = new_request_id("chat-up")
    prompt = "What is a switchyard?"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": prompt}],
        temperature=0.25,
        extra_headers={"x-request-id": rid},
    )
    assert raw.status_code == 200
    assert raw.headers["x-request-id"] == rid
    assert raw.headers["x-switchyard-provider"] == "fake-openai"
    assert raw.headers["x-switchyard-attempts"] == "1"
    completion = raw.parse()
    assert completion.choices[0].message.content == upstream_answer(prompt)
    assert completion.model == UP_CHAT_REPORTED  # the model the upstream reported
    assert completion.system_fingerprint == "fp_e2e"  # other fields pass through
    assert completion.usage.prompt_tokens == UP_USAGE["prompt_tokens"]
    assert completion.usage.completion_tokens == UP_USAGE["completion_tokens"]
    assert completion.usage.total_tokens == UP_USAGE["total_tokens"]

    # What reached the upstream.
    got = fake_upstream.by_request_id(rid)
    assert len(got) == 1, "exactly one upstream try, carrying the client's x-request-id"
    up = got[0]
    assert up.method == "POST"
    assert up.path == "/v1/chat/completions"
    assert up.json["model"] == UP_CHAT  # public name rewritten to the target's model
    assert up.json["messages"] == [{"role": "user", "content": prompt}]
    assert up.json["temperature"] == 0.25  # the rest of the body is kept
    assert up.headers["authorization"] == [f"Bearer {PROVIDER_KEY}"]
    assert up.header("accept-encoding") == "identity"
    assert up.header("content-type").startswith("application/json")
    assert int(up.header("content-length")) == len(up.body)
    # The app's virtual key never leaves the gateway.
    assert_no_secret(up.raw_text().replace(PROVIDER_KEY, "<provider key>"))
    assert FULL_KEY not in up.raw_text() and RESTRICTED_KEY not in up.raw_text()


def test_upstream_response_headers_pass_an_allow_list(client, fake_upstream):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "headers?"}])
    assert raw.status_code == 200
    headers = {k.lower() for k in raw.headers.keys()}
    # Diagnostics pass; the upstream's own request id is renamed.
    assert raw.headers["openai-processing-ms"] == "3"
    assert raw.headers["x-upstream-request-id"].startswith("req_upstream_")
    assert re.fullmatch(r"[0-9a-f]{32}", raw.headers["x-request-id"])  # the gateway's own
    # Account details and the provider's rate-limit state do not.
    assert "set-cookie" not in headers
    assert "openai-organization" not in headers
    assert not any(h.startswith("x-ratelimit-") for h in headers)
    assert raw.parse().choices[0].message.content == upstream_answer("headers?")


def test_request_id_is_generated_when_the_clients_is_invalid(client, gateway):
    raw = client.chat.completions.with_raw_response.create(
        model="mock-chat",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": "not valid; has spaces"},
    )
    rid = raw.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    assert gateway.log_for(rid)["status"] == 200
