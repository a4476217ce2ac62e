"""Streaming chat completions (`stream=True`) through the mock and the fake upstream."""

import math

from conftest import (
    UP_CHAT,
    UP_CHAT_REPORTED,
    UP_STREAM_PIECES,
    UP_USAGE,
    collect,
    new_request_id,
)


def test_stream_through_mock_with_usage(client, gateway):
    text = "The quick brown fox jumps over the lazy dog, twice over."  # 56 chars -> 4 chunks
    rid = new_request_id("stream-mock")
    raw = client.chat.completions.with_raw_response.create(
        model="mock-chat",
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": rid},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-request-id"] == rid
    assert raw.headers["x-switchyard-provider"] == "demo"
    assert raw.headers["x-switchyard-attempts"] == "1"
    pieces, chunks = collect(raw.parse())

    assert "".join(pieces) == text
    assert len(pieces) > 1, f"expected several content chunks, got {pieces}"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.model == "mock-chat-1" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    # The last chunk carries the usage and no choice; no other chunk carries usage.
    last = chunks[-1]
    assert last.choices == []
    expected = max(1, math.ceil(len(text) / 4))
    assert last.usage.prompt_tokens == expected
    assert last.usage.completion_tokens == expected
    assert last.usage.total_tokens == 2 * expected
    assert all(c.usage is None for c in chunks[:-1])

    line = gateway.log_for(rid)
    assert line["stream"] is True
    assert line["status"] == 200
    assert line["input_tokens"] == expected and line["output_tokens"] == expected
    assert isinstance(line["ttft_ms"], (int, float)) and line["ttft_ms"] >= 0


def test_stream_without_include_usage_has_no_usage_chunk(client):
    stream = client.chat.completions.create(
        model="mock-chat",
        messages=[{"role": "user", "content": "x" * 40}],
        stream=True,
    )
    pieces, chunks = collect(stream)
    assert "".join(pieces) == "x" * 40
    assert len(pieces) > 1
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_stream_through_fake_openai_upstream(client, gateway, fake_upstream):
    rid = new_request_id("stream-up")
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": rid},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-switchyard-provider"] == "fake-openai"
    assert raw.headers["x-switchyard-attempts"] == "1"
    pieces, chunks = collect(raw.parse())

    assert pieces == UP_STREAM_PIECES  # event by event, nothing merged or lost
    assert "".join(pieces) == "Hello from the fake upstream."
    assert all(c.model == UP_CHAT_REPORTED for c in chunks)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == UP_USAGE["prompt_tokens"]
    assert chunks[-1].usage.completion_tokens == UP_USAGE["completion_tokens"]
    assert chunks[-1].usage.total_tokens == UP_USAGE["total_tokens"]

    (up,) = fake_upstream.by_request_id(rid)
    assert up.json["model"] == UP_CHAT
    assert up.json["stream"] is True
    assert up.json["stream_options"] == {"include_usage": True}
    assert up.header("accept-encoding") == "identity"

    line = gateway.log_for(rid)
    assert line["stream"] is True
    assert line["status"] == 200
    assert line["provider"] == "fake-openai"
    assert line["input_tokens"] == UP_USAGE["prompt_tokens"]
    assert line["output_tokens"] == UP_USAGE["completion_tokens"]
    assert isinstance(line["ttft_ms"], (int, float)) and 0 <= line["ttft_ms"] <= line["duration_ms"]
