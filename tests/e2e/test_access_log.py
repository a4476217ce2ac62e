"""The JSON access log on stdout: one line per request, fixed keys, no secrets."""

import json
import math
import secrets
from datetime import datetime, timedelta, timezone

import openai
import pytest

from conftest import (
    ACCESS_LOG_KEYS,
    GPT4O_PRICE_IN,
    GPT4O_PRICE_OUT,
    PROVIDER_KEY,
    UP_CHAT,
    UP_USAGE,
    assert_no_secret,
    make_client,
    new_request_id,
)


def test_line_for_an_upstream_request(client, gateway):
    rid = new_request_id("log-up")
    before = datetime.now(timezone.utc)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "log me"}],
                                   extra_headers={"x-request-id": rid})
    line = gateway.log_for(rid)
    assert set(line) == ACCESS_LOG_KEYS

    t = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert t.utcoffset() == timedelta(0), "time is UTC"
    assert before - timedelta(seconds=5) <= t <= datetime.now(timezone.utc) + timedelta(seconds=5)

    assert line["request_id"] == rid
    assert line["key"] == "e2e-full"  # the key's name, never the secret
    assert line["model"] == "gpt-4o"  # the name the client asked for
    assert line["provider"] == "fake-openai"
    assert line["target"] == f"fake-openai/{UP_CHAT}"  # default target id
    assert line["attempts"] == 1
    assert line["status"] == 200
    assert line["stream"] is False
    assert line["error"] is None
    assert line["ttft_ms"] is None  # not a stream
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] > 0
    assert isinstance(line["upstream_ms"], (int, float))
    assert 0 <= line["upstream_ms"] <= line["duration_ms"]
    assert line["input_tokens"] == UP_USAGE["prompt_tokens"]
    assert line["output_tokens"] == UP_USAGE["completion_tokens"]
    expected_cost = (UP_USAGE["prompt_tokens"] * GPT4O_PRICE_IN
                     + UP_USAGE["completion_tokens"] * GPT4O_PRICE_OUT) / 1e6
    assert math.isclose(line["cost_usd"], expected_cost, rel_tol=1e-6)
    assert_no_secret(json.dumps(line))


def test_line_for_a_mock_request_without_price(client, gateway):
    rid = new_request_id("log-mock")
    client.embeddings.create(model="mock-embed", input="abcdefgh", extra_headers={"x-request-id": rid})
    line = gateway.log_for(rid)
    assert set(line) == ACCESS_LOG_KEYS
    assert (line["model"], line["provider"], line["target"]) == ("mock-embed", "demo",
                                                                 "demo/mock-embed-1")
    assert line["status"] == 200 and line["attempts"] == 1
    assert line["input_tokens"] == 2 and line["output_tokens"] == 0
    assert line["cost_usd"] is None  # no price configured


def test_line_for_a_request_refused_before_routing(client, gateway):
    rid = new_request_id("log-404")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}],
                                       extra_headers={"x-request-id": rid})
    line = gateway.log_for(rid)
    assert set(line) == ACCESS_LOG_KEYS
    assert line["status"] == 404
    assert line["error"] == "model_not_found"
    assert line["key"] == "e2e-full"
    assert line["attempts"] == 0
    for field in ("provider", "target", "upstream_ms", "ttft_ms", "input_tokens",
                  "output_tokens", "cost_usd"):
        assert line[field] is None, field


def test_stdout_is_only_access_log_lines_and_holds_no_secret(client, gateway):
    # A mix of outcomes, then every line written so far is checked.
    wrong = "sk-wrong-" + secrets.token_hex(16)
    rids = []
    for model in ("mock-chat", "gpt-4o", "gpt-upstream-401", "gpt-bad-request"):
        rid = new_request_id("log-mix")
        rids.append(rid)
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "m"}],
                                           extra_headers={"x-request-id": rid})
        except openai.APIStatusError:
            pass
    bad = make_client(gateway, wrong)
    rid = new_request_id("log-mix")
    rids.append(rid)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list(extra_headers={"x-request-id": rid})
    bad.close()
    statuses = [gateway.log_for(r)["status"] for r in rids]
    assert statuses == [200, 200, 502, 400, 401]

    lines = gateway.stdout_lines()
    assert lines, "the access log is empty"
    for raw in lines:
        entry = json.loads(raw)  # nothing but JSON objects on stdout
        assert isinstance(entry, dict) and set(entry) == ACCESS_LOG_KEYS, raw
    request_ids = [json.loads(raw)["request_id"] for raw in lines]
    assert len(request_ids) == len(set(request_ids)), "one line per request"
    everything = "\n".join(lines) + "\n" + gateway.stderr_text()
    assert_no_secret(everything, wrong)
    assert PROVIDER_KEY not in everything
