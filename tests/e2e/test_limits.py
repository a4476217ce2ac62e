"""Per-key rate limits, seen through the OpenAI SDK.

A gateway of its own (`limits_gateway`) holds one key per test, so no test spends
another's budget, plus a key without limits. Models are the built-in mock (fast, so
a budget can be spent in a blink) and the fake OpenAI upstream (which reports known
usage, `UP_USAGE`, and records what the gateway sent it).

The contract (DESIGN.md §2 "Rate-limit semantics"): a key's budgets are token
buckets refilled continuously; a refused request gets a 429 in OpenAI's envelope
(`type` `requests` or `tokens`, code `rate_limit_exceeded`) with `retry-after` and
`retry-after-ms`, which the SDK raises as `RateLimitError` and honours when it
retries; every answer to a key with limits carries the `x-ratelimit-*` headers.
Expected values are written here by hand.
"""

from __future__ import annotations

import math
import re
import secrets
import time

import openai
import pytest

from conftest import (
    PROVIDER_KEY,
    ROUTING,
    UP_CHAT,
    UP_USAGE,
    collect,
    free_port,
    new_request_id,
    pingora_settings,
    start_on_free_ports,
)

# One key per test: name → (secret, rate_limit or None).
KEYS = {
    "lim-burst": ("sk-sy-e2e-lim-burst-" + secrets.token_hex(12), {"requests_per_minute": 30}),
    "lim-neighbour": ("sk-sy-e2e-lim-neighbour-" + secrets.token_hex(12),
                      {"requests_per_minute": 30}),
    "lim-untouched": ("sk-sy-e2e-lim-untouched-" + secrets.token_hex(12),
                      {"requests_per_minute": 30}),
    "lim-headers": ("sk-sy-e2e-lim-headers-" + secrets.token_hex(12),
                    {"requests_per_minute": 600, "tokens_per_minute": 100000}),
    "lim-tokens": ("sk-sy-e2e-lim-tokens-" + secrets.token_hex(12),
                   {"tokens_per_minute": 100, "default_max_tokens": 50}),
    "lim-huge": ("sk-sy-e2e-lim-huge-" + secrets.token_hex(12),
                 {"tokens_per_minute": 100, "default_max_tokens": 50}),
    "lim-free": ("sk-sy-e2e-lim-free-" + secrets.token_hex(12), None),
}
# "user" + this question: 35 characters, 9 tokens (characters ÷ 4, rounded up).
QUESTION = "What is the capital of Denmark?"
CHAT = [{"role": "user", "content": QUESTION}]
PROMPT_TOKENS = 9
# OpenAI's duration format: 120ms, 1s, 1.5s, 6m0s, 1h0m0s.
OPENAI_DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")


def limits_gateway_config(upstream_base_url: str, workdir) -> dict:
    keys = []
    for name, (secret, limit) in KEYS.items():
        key = {"name": name, "key": secret}
        if limit:
            key["rate_limit"] = limit
        keys.append(key)
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "keys": keys,
        "providers": {
            "demo": {"type": "mock"},
            "fake-openai": {"type": "openai", "base_url": upstream_base_url,
                            "api_key": PROVIDER_KEY},
        },
        "models": {
            "mock-chat": {"targets": [{"provider": "demo", "model": "mock-chat-1"}]},
            "gpt-4o": {"targets": [{"provider": "fake-openai", "model": UP_CHAT}]},
        },
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
    }


@pytest.fixture(scope="module")
def limits_gateway(start_gateway, fake_upstream, tmp_path_factory):
    return start_on_free_ports(start_gateway, tmp_path_factory, lambda workdir: (
        limits_gateway_config(fake_upstream.base_url, workdir)))


def client_for(gateway, key: str, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=KEYS[key][0],
                         max_retries=max_retries, timeout=10.0)


def within_refill(remaining: int, expected: int, per_minute: int, since: float) -> bool:
    """`remaining` is `expected`, plus at most what refilled since `since`."""
    refilled = math.ceil((time.monotonic() - since) * per_minute / 60)
    return expected <= remaining <= expected + refilled


def spend_requests(client: openai.OpenAI, most: int) -> openai.RateLimitError:
    """Sends chats until one is refused (at most `most`); returns the refusal."""
    for _ in range(most):
        try:
            client.chat.completions.create(model="mock-chat", messages=CHAT)
        except openai.RateLimitError as e:
            return e
    raise AssertionError(f"no 429 within {most} requests")


def test_an_exhausted_key_raises_rate_limit_error_with_an_honest_retry_hint(limits_gateway):
    client = client_for(limits_gateway, "lim-burst")
    # 30 a minute: the 31st request within a second or two is refused.
    refusal = spend_requests(client, 33)
    assert refusal.status_code == 429
    assert refusal.code == "rate_limit_exceeded"
    assert refusal.type == "requests"
    assert "lim-burst" in refusal.message and "requests per minute" in refusal.message
    headers = refusal.response.headers
    wait_ms = int(headers["retry-after-ms"])
    assert 0 < wait_ms <= 2000  # one request frees up every 2 s
    assert int(headers["retry-after"]) == max(1, math.ceil(wait_ms / 1000))
    assert headers["x-ratelimit-limit-requests"] == "30"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert OPENAI_DURATION.match(headers["x-ratelimit-reset-requests"])
    # The SDK's own retry waits for `retry-after-ms`, and the hint is honest: the
    # retry is admitted.
    patient = client_for(limits_gateway, "lim-burst", max_retries=2)
    started = time.monotonic()
    answer = patient.chat.completions.create(model="mock-chat", messages=CHAT)
    assert answer.choices[0].message.content
    assert time.monotonic() - started < 5


def test_another_key_never_notices_a_neighbour_that_ran_out(limits_gateway):
    spend_requests(client_for(limits_gateway, "lim-neighbour"), 33)
    with pytest.raises(openai.RateLimitError):
        client_for(limits_gateway, "lim-neighbour").chat.completions.create(
            model="mock-chat", messages=CHAT)
    free = client_for(limits_gateway, "lim-free")
    for _ in range(40):
        raw = free.chat.completions.with_raw_response.create(model="mock-chat", messages=CHAT)
        assert raw.http_response.status_code == 200
        assert not [h for h in raw.headers if h.lower().startswith("x-ratelimit")]
    # A key with the same limits has all of its own budget.
    untouched = client_for(limits_gateway, "lim-untouched")
    raw = untouched.chat.completions.with_raw_response.create(model="mock-chat", messages=CHAT)
    assert raw.http_response.status_code == 200
    assert raw.headers["x-ratelimit-remaining-requests"] == "29"


def test_every_answer_carries_both_budgets_in_openai_s_formats(limits_gateway):
    client = client_for(limits_gateway, "lim-headers")
    raw = client.chat.completions.with_raw_response.create(
        model="mock-chat", messages=CHAT, max_tokens=100)
    answer = raw.parse()
    h = raw.headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-limit-tokens"]) == ("600", "100000")
    # One request frees up every 100 ms, far longer than this answer took.
    assert h["x-ratelimit-remaining-requests"] == "599"
    # The mock's usage is known before the header: remaining counts it, not the
    # estimate (9 + 100), give or take what refilled (one token per 0.6 ms).
    used = answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert used < PROMPT_TOKENS + 100
    assert 100000 - used <= int(h["x-ratelimit-remaining-tokens"]) <= 100000 - used + 20
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        assert OPENAI_DURATION.match(h[name]), h[name]
    # Listing models spends nothing, and still reports the budgets.
    listed = client.models.with_raw_response.list()
    assert int(listed.headers["x-ratelimit-remaining-requests"]) >= int(
        h["x-ratelimit-remaining-requests"])


def test_a_stream_reserves_its_estimate_then_pays_its_reported_usage(limits_gateway,
                                                                      fake_upstream):
    client = client_for(limits_gateway, "lim-tokens")
    rid = new_request_id("lim-stream")
    started = time.monotonic()
    # No include_usage from the client: the gateway asks the upstream on its own.
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=CHAT, max_tokens=20, stream=True,
            extra_headers={"x-request-id": rid}) as response:
        reserved = int(response.headers["x-ratelimit-remaining-tokens"])
        pieces, chunks = collect(response.parse())
    assert within_refill(reserved, 100 - (PROMPT_TOKENS + 20), 100, started)
    assert pieces and all(c.usage is None for c in chunks), "usage chunk the client never asked for"
    (sent,) = fake_upstream.by_request_id(rid)
    assert sent.json["stream_options"] == {"include_usage": True}
    line = limits_gateway.log_for(rid)
    assert (line["input_tokens"], line["output_tokens"]) == (
        UP_USAGE["prompt_tokens"], UP_USAGE["completion_tokens"])
    assert line["usage_estimated"] is False
    after = client.models.with_raw_response.list()
    assert within_refill(int(after.headers["x-ratelimit-remaining-tokens"]),
                         100 - UP_USAGE["total_tokens"], 100, started)


def test_a_request_that_can_never_fit_is_not_retried_by_the_sdk(limits_gateway, fake_upstream):
    client = client_for(limits_gateway, "lim-huge", max_retries=2)
    rid = new_request_id("lim-huge")
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=CHAT, max_tokens=5000,
                                       extra_headers={"x-request-id": rid})
    # `x-should-retry: false`: the SDK gives up at once instead of retrying twice.
    assert time.monotonic() - started < 1.0
    e = refused.value
    assert (e.type, e.code) == ("tokens", "rate_limit_exceeded")
    assert "never fit" in e.message and f"requested {PROMPT_TOKENS + 5000}" in e.message
    assert "retry-after" not in e.response.headers
    assert fake_upstream.by_request_id(rid) == []
    assert limits_gateway.log_for(rid)["status"] == 429
    # It took nothing: a request that fits still goes through.
    answer = client.chat.completions.create(model="gpt-4o", messages=CHAT, max_tokens=20)
    assert answer.usage.total_tokens == UP_USAGE["total_tokens"]
