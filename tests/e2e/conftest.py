"""End-to-end fixtures: the real gateway binary, a fake OpenAI upstream, SDK clients.

The gateway runs as `switchyard -c CONFIG.yaml` on free 127.0.0.1 ports with a
config written for the session. Two kinds of provider sit behind it:

* `demo` (`type: mock`): the gateway's built-in mock, no upstream at all;
* `fake-openai` (`type: openai`): a small OpenAI-compatible HTTP/1.1 server written
  here (threads, keep-alive, TCP_NODELAY) that records every request it receives,
  so tests can check what reached the upstream. Its behaviour is chosen by the
  upstream model name the gateway writes into the body (see `FakeOpenAI`), and
  some names make it fail the ways real upstreams do (a 500, a 429, no answer, a
  stream that stalls or is cut off) for the failover tests;
* `azure-*` (`type: azure`): a fake Azure OpenAI resource on the same plumbing that
  checks Azure's URL shape, `api-version` and `api-key`, and answers with bodies and
  stream chunks recorded from the real service. Its behaviour is chosen by the
  deployment named in the URL (see `FakeAzure`).
* `bedrock-*` (`type: bedrock`): fake AWS Bedrock Runtimes (Converse and
  ConverseStream) that verify every request's SigV4 signature with botocore, or its
  Bedrock API key, and answer with bodies and event-stream bytes recorded from the
  real service. Their behaviour is chosen by a marker in the last user message (see
  `FakeBedrock`). The Bedrock tests run their own gateway (`bedrock_gateway`), and
  so do the failover tests (`failover_gateway` in test_failover.py).

Everything binds 127.0.0.1 only; the gateway is stopped by its PID at teardown.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import openai
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
LOG_WAIT_S = 5.0

# Secrets of this session: random, so finding one in a log is never a coincidence.
FULL_KEY = "sk-sy-e2e-full-" + secrets.token_hex(16)
RESTRICTED_KEY = "sk-sy-e2e-restricted-" + secrets.token_hex(16)
PROVIDER_KEY = "sk-upstream-e2e-" + secrets.token_hex(16)
# Azure resource keys are 32 hex digits. The fake resource accepts AZURE_KEY only;
# AZURE_WRONG_KEY is configured on one provider to provoke Azure's 401.
AZURE_KEY = secrets.token_hex(16)
AZURE_WRONG_KEY = secrets.token_hex(16)
# AWS credentials of the fake Bedrock. The access key id is no secret (every
# Authorization header names it); the rest are. BEDROCK_WRONG_SECRET is configured on
# one provider to provoke Bedrock's InvalidSignatureException.
BEDROCK_ACCESS_KEY_ID = "AKIDEXAMPLE"
BEDROCK_SECRET = secrets.token_urlsafe(30)  # 40 characters, like a secret access key
BEDROCK_WRONG_SECRET = secrets.token_urlsafe(30)
# An STS session token: long base64 with `+`, `/` and `=`, sent (and signed) verbatim.
BEDROCK_SESSION_TOKEN = ("IQoJb3JpZ2luX2VjE"
                         + base64.b64encode(b"\xfb\xff" + secrets.token_bytes(159)).decode())
# A Bedrock API key (sent as `Authorization: Bearer`), in the shape AWS issues them.
BEDROCK_API_KEY = "ABSK" + base64.b64encode(
    b"BedrockAPIKey-e2e-at-" + secrets.token_hex(20).encode()).decode()
ALL_SECRETS = (FULL_KEY, RESTRICTED_KEY, PROVIDER_KEY, AZURE_KEY, AZURE_WRONG_KEY,
               BEDROCK_SECRET, BEDROCK_WRONG_SECRET, BEDROCK_SESSION_TOKEN, BEDROCK_API_KEY)

# Prices of the `gpt-4o` target, USD per million tokens (for `cost_usd`).
GPT4O_PRICE_IN = 2.5
GPT4O_PRICE_OUT = 10.0
MAX_REQUEST_BYTES = 64 * 1024

ACCESS_LOG_KEYS = {
    "time",
    "request_id",
    "key",
    "model",
    "provider",
    "target",
    "attempts",
    "status",
    "stream",
    "duration_ms",
    "ttft_ms",
    "upstream_ms",
    "input_tokens",
    "output_tokens",
    "usage_estimated",
    "cost_usd",
    "error",
}


def collect(stream):
    """(content pieces, chunks) of an SDK stream, consumed to the end."""
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks
              if c.choices and c.choices[0].delta.content]
    return pieces, chunks


def read_until_error(stream) -> tuple[list[str], openai.APIError]:
    """The content pieces an SDK stream delivered before it raised, and the error.
    A stream that ends without an error fails the test (a broken answer must never
    look complete), and so does one that hangs or drops: it must end with an error
    event."""
    pieces = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert not isinstance(e.value, openai.APIConnectionError), \
        f"the stream hung or dropped instead of ending with an error event: {e.value!r}"
    return pieces, e.value


def new_request_id(prefix: str = "e2e") -> str:
    """A valid client `x-request-id` ([A-Za-z0-9._:-], at most 128 characters)."""
    return f"{prefix}-{secrets.token_hex(8)}"


def with_request_id(message: str, request_id: str) -> str:
    """An error message as the gateway sends it: the words, then the request id."""
    return f"{message} (request id: {request_id})"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------
# The fake OpenAI-compatible upstream
# --------------------------------------------------------------------------------------

class RecordedRequest:
    """One request the fake upstream received."""

    def __init__(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes):
        self.method = method
        self.path = path  # as requested, query included
        parts = urllib.parse.urlsplit(path)
        self.url_path = parts.path
        self.query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        self.header_list = headers
        self.headers = {}
        for name, value in headers:
            self.headers.setdefault(name.lower(), []).append(value)
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def query_values(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def raw_text(self) -> str:
        """Request line, every header and the body, for "secret never forwarded" checks."""
        lines = [f"{self.method} {self.path}"] + [f"{n}: {v}" for n, v in self.header_list]
        return "\n".join(lines) + "\n\n" + self.body.decode("utf-8", "replace")


# Upstream model names and what the fake does for them.
UP_CHAT = "fake-gpt"                 # a normal chat / stream answer
UP_CHAT_REPORTED = "fake-gpt-2024-08-06"  # the model the fake reports back
UP_BAD_REQUEST = "fake-bad-request"  # 400 with an OpenAI error envelope
UP_UNAUTHORIZED = "fake-unauthorized"  # 401: the provider key was refused
UP_EMBED = "fake-embed"              # embeddings
UP_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
UP_BAD_REQUEST_MESSAGE = "Upstream says: 'temperature' must be at most 2."
UP_STREAM_PIECES = ["Hello", " from", " the", " fake", " upstream."]
# Upstream model names that make the fake fail (the failover tests).
UP_SERVER_ERROR = "fake-server-error"    # 500 with OpenAI's server_error envelope
UP_HANG = "fake-hang"                    # reads the request, then sends nothing at all
UP_RATE_LIMITED = "fake-rate-limited-"   # + N: 429 with `retry-after-ms: N`
# Streams (`stream: true` only) that fail part-way. The role chunk is content-free;
# "after content" streams send the role chunk and one content chunk, UP_PARTIAL_PIECE.
UP_STALL_AFTER_HEADERS = "fake-stall-after-headers"  # the stream's header, then nothing
UP_CUT_AFTER_ROLE = "fake-cut-after-role"          # then the connection is closed
UP_STALL_AFTER_ROLE = "fake-stall-after-role"      # then nothing, until the gateway leaves
UP_CUT_AFTER_CONTENT = "fake-cut-after-content"    # then the connection is closed
UP_STALL_AFTER_CONTENT = "fake-stall-after-content"  # then nothing, until the gateway leaves
UP_PARTIAL_PIECE = "Hello"
UP_SERVER_ERROR_MESSAGE = ("The server had an error while processing your request. "
                           "Sorry about that!")
# The longest a failing fake keeps a connection silent (a gateway that never gives up
# on it fails the test's time bound long before).
UP_HOLD_S = 8.0
# A slow answer (the drain, reload and upgrade tests): `fake-slow-<N>x<MS>` streams N
# content events (`slow_pieces(N)`) MS milliseconds apart, then the finish chunk and
# [DONE]; without `stream` it answers the whole chat after N x MS milliseconds.
UP_SLOW = "fake-slow-"


def slow_model(events: int, interval_ms: int) -> str:
    """The upstream model name of a slow answer: `events` pieces, `interval_ms` apart."""
    return f"{UP_SLOW}{events}x{interval_ms}"


def slow_pieces(events: int) -> list[str]:
    """The content pieces a slow stream of `events` events sends, in order."""
    return [f"piece{i} " for i in range(events)]


def upstream_answer(prompt: str) -> str:
    return f"upstream echo: {prompt}"


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic vector whose values are exact in float32."""
    seed = sum(text.encode()) % 97
    return [((seed + i * 7) % 64) / 64.0 - 0.5 for i in range(dimensions)]


class RecordingHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 plumbing shared by the fake upstreams: bodies, JSON, SSE chunks."""

    protocol_version = "HTTP/1.1"  # keep-alive: the gateway pools its connections
    disable_nagle_algorithm = True  # TCP_NODELAY: stream events leave at once
    timeout = 30  # an idle keep-alive connection is closed after this
    server: "RecordingServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep pytest output clean

    def provider_headers(self) -> dict[str, str]:
        """Headers the imitated provider adds to every JSON answer."""
        return {}

    def _record(self, method: str, body: bytes = b"") -> RecordedRequest:
        rec = RecordedRequest(method, self.path, list(self.headers.items()), body)
        self.server.record(rec)
        return rec

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        self._send_body(status, json.dumps(payload).encode(), extra)

    def _send_body(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        """A JSON answer of exactly these bytes (recorded bodies are replayed as is)."""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in {**self.provider_headers(), **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _start_stream(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()

    def _send_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_event(self, data: bytes) -> None:
        """One SSE `data:` event in its own HTTP chunk."""
        self._send_chunk(b"data: " + data + b"\n\n")
        time.sleep(0.005)  # separate TCP segments, as a real model would produce

    def _end_stream(self, gap: float | None = 0.0) -> None:
        """`data: [DONE]`, then the end of the chunked body: `gap` seconds later, or
        in the same write (one TCP segment) when `gap` is None."""
        done = b"data: [DONE]\n\n"
        if gap is None:
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        else:
            self._send_chunk(done)
            if gap:
                time.sleep(gap)
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class RecordingServer(ThreadingHTTPServer):
    """A fake upstream on a free 127.0.0.1 port that keeps every request it got."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[RecordingHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def received(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    def by_request_id(self, request_id: str) -> list[RecordedRequest]:
        return [r for r in self.received() if r.header("x-request-id") == request_id]


def embedding_inputs(req: dict) -> list:
    """The `input` of an embeddings request, always as a list."""
    inputs = req.get("input")
    return [inputs] if isinstance(inputs, str) else list(inputs)


def embedding_data(req: dict) -> list[dict]:
    """The `data` of an embeddings answer: one fake vector per input, as float
    lists or, with `encoding_format: base64`, as packed little-endian float32."""
    dims = int(req.get("dimensions") or 8)
    data = []
    for i, text in enumerate(embedding_inputs(req)):
        vec = fake_vector(str(text), dims)
        if req.get("encoding_format") == "base64":
            emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
        else:
            emb = vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return data


class FakeOpenAIHandler(RecordingHandler):
    server: "FakeOpenAIServer"

    def provider_headers(self) -> dict[str, str]:
        # Headers a real provider sends that must not reach the app.
        return {
            "x-request-id": "req_upstream_" + secrets.token_hex(4),
            "openai-processing-ms": "3",
            "openai-organization": "org-e2e-secret",
            "set-cookie": "__cf_bm=e2e; path=/",
            "x-ratelimit-remaining-requests": "4999",
        }

    # -- routes ----------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        self._record("GET")
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": []})
        else:
            self._send_json(404, {"error": {"message": "no such path", "type": "invalid_request_error",
                                            "param": None, "code": None}})

    def do_POST(self) -> None:  # noqa: N802
        rec = self._record("POST", self._read_body())
        req = rec.json or {}
        model = req.get("model")
        if model == UP_UNAUTHORIZED:
            # A real provider quotes (part of) the refused key; the gateway must not relay it.
            self._send_json(401, {"error": {
                "message": f"Incorrect API key provided: {PROVIDER_KEY}.",
                "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
        elif model == UP_BAD_REQUEST:
            self._send_json(400, {"error": {
                "message": UP_BAD_REQUEST_MESSAGE, "type": "invalid_request_error",
                "param": "temperature", "code": "invalid_value"}})
        elif model == UP_SERVER_ERROR:
            self._send_json(500, {"error": {
                "message": UP_SERVER_ERROR_MESSAGE, "type": "server_error", "param": None,
                "code": None}})
        elif model == UP_HANG:
            self._hold(UP_HOLD_S)
            self.close_connection = True  # and never an answer
        elif isinstance(model, str) and model.startswith(UP_RATE_LIMITED):
            ms = int(model[len(UP_RATE_LIMITED):])
            self._send_json(429, {"error": {
                "message": f"Rate limit reached for requests. Please try again in {ms}ms.",
                "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
                {"retry-after-ms": str(ms), "retry-after": str(math.ceil(ms / 1000))})
        elif (self.path == "/v1/chat/completions" and model in FAILING_STREAMS
              and req.get("stream")):
            self._failing_stream(model)
        elif (self.path == "/v1/chat/completions" and isinstance(model, str)
              and model.startswith(UP_SLOW)):
            events, interval_ms = (int(n) for n in model[len(UP_SLOW):].split("x"))
            self._slow_chat(req, events, interval_ms / 1000)
        elif self.path == "/v1/chat/completions" and model == UP_CHAT:
            if req.get("stream"):
                self._stream_chat(req)
            else:
                self._whole_chat(req)
        elif self.path == "/v1/embeddings" and model == UP_EMBED:
            self._embeddings(req)
        else:
            self._send_json(404, {"error": {
                "message": f"The model `{model}` does not exist", "type": "invalid_request_error",
                "param": None, "code": "model_not_found"}})

    def _whole_chat(self, req: dict) -> None:
        last_user = next((m.get("content") for m in reversed(req.get("messages", []))
                          if m.get("role") == "user"), "")
        self._send_json(200, {
            "id": "chatcmpl-fake-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": UP_CHAT_REPORTED,
            "system_fingerprint": "fp_e2e",
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": upstream_answer(last_user),
                                     "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": UP_USAGE,
        })

    def _stream_chat(self, req: dict) -> None:
        self._stream_pieces(req, UP_STREAM_PIECES, 0.0, "chatcmpl-fake-s", "req_upstream_stream")

    def _slow_chat(self, req: dict, events: int, interval: float) -> None:
        """A stream of `events` content events `interval` seconds apart (the first one
        `interval` after the role chunk), then the finish chunk, usage when asked
        and [DONE]; or, without `stream`, the whole answer after events x interval
        (sooner if the gateway hangs up). A gateway that leaves ends it."""
        if not req.get("stream"):
            self._hold(events * interval)
            self._whole_chat(req)
            return
        self._stream_pieces(req, slow_pieces(events), interval, "chatcmpl-fake-slow",
                            "req_upstream_slow_stream")

    def _stream_pieces(self, req: dict, pieces: list[str], interval: float, chunk_id: str,
                       upstream_id: str) -> None:
        """A chat stream: the role chunk, one content chunk per piece (each after
        `interval` seconds), the finish chunk, usage when asked, and [DONE]."""
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        self._start_stream({"x-request-id": upstream_id})
        base = {"id": chunk_id, "object": "chat.completion.chunk",
                "created": int(time.time()), "model": UP_CHAT_REPORTED,
                "system_fingerprint": "fp_e2e"}

        def event(choices: list, **extra: Any) -> None:
            self._send_event(json.dumps(dict(base, choices=choices, **extra)).encode())

        event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                "logprobs": None, "finish_reason": None}])
        for piece in pieces:
            if interval:
                time.sleep(interval)
            event([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                    "finish_reason": None}])
        event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        if include_usage:
            event([], usage=UP_USAGE)
        self._end_stream()

    def _failing_stream(self, model: str) -> None:
        """The start of a normal stream, then a cut or a stall (see FAILING_STREAMS)."""
        self._start_stream({"x-request-id": "req_upstream_failing_stream"})
        if model == UP_STALL_AFTER_HEADERS:
            self._hold(UP_HOLD_S)
            self._cut()
            return
        base = {"id": "chatcmpl-fake-f", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": UP_CHAT_REPORTED,
                "system_fingerprint": "fp_e2e"}
        self._send_event(json.dumps(dict(base, choices=[{
            "index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
            "finish_reason": None}])).encode())
        if model in (UP_CUT_AFTER_CONTENT, UP_STALL_AFTER_CONTENT):
            self._send_event(json.dumps(dict(base, choices=[{
                "index": 0, "delta": {"content": UP_PARTIAL_PIECE}, "logprobs": None,
                "finish_reason": None}])).encode())
        if model in (UP_STALL_AFTER_ROLE, UP_STALL_AFTER_CONTENT):
            self._hold(UP_HOLD_S)
        self._cut()

    def _hold(self, limit: float) -> None:
        """Sends nothing for up to `limit` seconds; returns as soon as the gateway
        hangs up (or sends anything)."""
        deadline = time.monotonic() + limit
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable:
                return

    def _cut(self) -> None:
        """Closes the connection where the answer stands: no terminating chunk."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _embeddings(self, req: dict) -> None:
        data = embedding_data(req)
        self._send_json(200, {"object": "list", "data": data, "model": UP_EMBED,
                              "usage": {"prompt_tokens": 5, "total_tokens": 5}})


FAILING_STREAMS = (UP_STALL_AFTER_HEADERS, UP_CUT_AFTER_ROLE, UP_STALL_AFTER_ROLE,
                   UP_CUT_AFTER_CONTENT, UP_STALL_AFTER_CONTENT)


class FakeOpenAIServer(RecordingServer):
    def __init__(self) -> None:
        super().__init__(FakeOpenAIHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # a gateway hanging up is no error

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"


# --------------------------------------------------------------------------------------
# The fake Azure OpenAI resource
# --------------------------------------------------------------------------------------

# Recordings of the real service (shared test vectors, next to this repository).
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "vectors" / "fixtures"
AZURE_CHAT_CASSETTE = SHARED_FIXTURES / "envoy-ai-gateway" / "cassettes" / "azure-chat-basic.yaml"
AZURE_STREAM_RECORDING = (SHARED_FIXTURES / "vercel-ai" / "openai-chat"
                          / "azure-model-router.1.chunks.txt")

AZURE_API_VERSION = "2024-10-21"              # GA: the providers' default
AZURE_PREVIEW_VERSION = "2025-01-01-preview"  # a target's override: has stream_options
AZURE_LEGACY_VERSION = "2024-06-01"           # GA before max_completion_tokens
AZURE_VERSIONS = {AZURE_API_VERSION, AZURE_PREVIEW_VERSION, AZURE_LEGACY_VERSION}
AZURE_APIM_PREFIX = "/apim"  # one provider sits behind an API-management path prefix

# Deployments of the fake resource and what they do.
AZ_DEP_CHAT = "gpt-4o-prod"                 # recorded chat answer / recorded stream
AZ_DEP_CHAT_PREVIEW = "gpt-4o-preview"      # the same, served on the preview version
AZ_DEP_CHAT_LEGACY = "gpt-4o-legacy"        # the same, behind the APIM prefix, old version
AZ_DEP_ASYNC_FILTER = "gpt-4o-async-filter"  # stream with asynchronous filter annotations
AZ_DEP_EMBED = "text-embedding-3-small-prod"  # embeddings
AZ_DEP_BUSY = "gpt-4o-busy"                 # 429 token rate limit, retry-after(-ms)
AZ_DEP_FILTERED = "gpt-4o-filtered"         # 400 content_filter with innererror
AZ_DEP_DELETED = "gpt-4o-deleted"           # not on the resource: 404 DeploymentNotFound
AZ_DEP_LATE_END = "gpt-4o-late-end"         # recorded stream; the body ends a while after [DONE]
AZ_CHAT_DEPLOYMENTS = {AZ_DEP_CHAT, AZ_DEP_CHAT_PREVIEW, AZ_DEP_CHAT_LEGACY, AZ_DEP_ASYNC_FILTER,
                       AZ_DEP_LATE_END}
AZ_LATE_END_S = 0.3

# Public model names served by Azure providers (see `gateway_config`).
AZURE_MODELS = {"az-gpt", "az-gpt-preview", "az-gpt-legacy", "az-gpt-async-filter", "az-embed",
                "az-gpt-busy", "az-gpt-filtered", "az-gpt-deleted", "az-gpt-badkey",
                "az-gpt-late-end"}

AZ_EMBED_REPORTED = "text-embedding-3-small"
AZ_RETRY_AFTER_MS = "1500"
AZ_RETRY_AFTER_S = "2"
AZ_RATE_LIMIT_MESSAGE = (
    "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 "
    "have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after "
    "2 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further "
    "increase the default rate limit.")
AZ_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")
AZ_FILTER_INNERERROR = {
    "code": "ResponsibleAIPolicyViolation",
    "content_filter_result": {
        "hate": {"filtered": True, "severity": "high"},
        "jailbreak": {"filtered": False, "detected": False},
        "self_harm": {"filtered": False, "severity": "safe"},
        "sexual": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": False, "severity": "safe"},
    },
}
AZ_UNAUTHORIZED_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource.")
AZ_DEPLOYMENT_NOT_FOUND_MESSAGE = (
    "The API deployment for this resource does not exist. If you created the deployment within "
    "the last 5 minutes, please wait a moment and try again.")

# The async-filter stream (Azure's documented shape): content chunks carry no filter
# verdict; annotation chunks (`id: ""`, no delta) arrive between and after them.
AZ_ASYNC_PIECES = ["Color", " is", " a", " property", " of", " light."]
AZ_ASYNC_MODEL = "gpt-4o-2024-11-20"
AZ_ASYNC_ID = "chatcmpl-async-e2e"
_SAFE = {"filtered": False, "severity": "safe"}
AZ_VERDICT = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}


def cassette_response_body(path: Path) -> bytes:
    """The response body of a go-vcr cassette with one interaction.

    The body is a single-line YAML double-quoted scalar whose escapes (`\\n`, `\\"`)
    are JSON's, so `json.loads` reads it and no YAML library is needed; the
    recorded `content_length` guards this small parser.
    """
    body = length = None
    in_response = False
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped == "response:":
            in_response = True
        elif in_response and stripped.startswith("body: ") and body is None:
            body = json.loads(stripped[len("body: "):]).encode()
        elif in_response and stripped.startswith("content_length: ") and length is None:
            length = int(stripped.split(":", 1)[1])
    if body is None or length != len(body):
        raise ValueError(f"cannot read the response body of {path} "
                         f"({length=}, got {None if body is None else len(body)} bytes)")
    return body


class AzureRecordings:
    """The real Azure answers the fake replays, and what tests expect from them."""

    def __init__(self) -> None:
        for path in (AZURE_CHAT_CASSETTE, AZURE_STREAM_RECORDING):
            if not path.is_file():
                pytest.fail(f"recording {path} not found (the shared test vectors)")
        self.chat_body = cassette_response_body(AZURE_CHAT_CASSETTE)
        self.chat = json.loads(self.chat_body)
        self.chat_text = self.chat["choices"][0]["message"]["content"]
        lines = [ln.encode() for ln in AZURE_STREAM_RECORDING.read_text(encoding="utf-8")
                 .splitlines() if ln.strip()]
        chunks = [json.loads(ln) for ln in lines]
        # Recorded order: the prompt-filter chunk, the answer, the usage chunk.
        assert chunks[0]["id"] == "" and chunks[0]["choices"] == [], chunks[0]
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"], chunks[-1]
        self.prompt_filter_line = lines[0]
        self.answer_lines = lines[1:-1]
        self.usage_line = lines[-1]
        self.stream_model = chunks[1]["model"]
        self.stream_text = "".join(c["choices"][0]["delta"].get("content") or ""
                                   for c in chunks[1:-1])
        self.stream_usage = chunks[-1]["usage"]


@functools.cache
def azure_recordings() -> AzureRecordings:
    return AzureRecordings()


class FakeAzureHandler(RecordingHandler):
    """An Azure OpenAI resource: `/openai/deployments/{deployment}/{operation}`.

    Like the real service it answers 401 to a wrong `api-key` and 404 to a wrong
    path, version or deployment. What a correct gateway never sends (no `api-key`,
    an `Authorization` header, a path or version Azure does not serve) is also
    noted in `server.violations`.
    """

    server: "FakeAzureServer"

    def provider_headers(self) -> dict[str, str]:
        # What Azure sends with every answer; only diagnostics may reach the app.
        return {
            "apim-request-id": str(uuid.uuid4()),
            "x-request-id": str(uuid.uuid4()),
            "x-ms-region": "East US 2",
            "x-ms-rai-invoked": "true",
            "azureml-model-session": "d016-20250930181259",
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-limit-tokens": "-1",
            "x-ratelimit-remaining-requests": "99",
            "x-ratelimit-remaining-tokens": "99998",
            "strict-transport-security": "max-age=31536000; includeSubDomains; preload",
            "x-content-type-options": "nosniff",
        }

    def _error(self, status: int, code: str, message: str, **extra: str) -> None:
        self._send_json(status, {"error": {"code": code, "message": message}}, extra)

    def do_GET(self) -> None:  # noqa: N802
        self._record("GET")
        self._error(404, "404", "Resource not found")

    def do_POST(self) -> None:  # noqa: N802
        rec = self._record("POST", self._read_body())
        problems = self.server.check(rec)
        if rec.header("api-key") != AZURE_KEY:
            self._error(401, "401", AZ_UNAUTHORIZED_MESSAGE)
            return
        route = self.server.route(rec)
        if route is None or problems:
            self._error(404, "404", "Resource not found")
            return
        deployment, operation = route
        req = rec.json or {}
        if deployment == AZ_DEP_BUSY:
            self._error(429, "429", AZ_RATE_LIMIT_MESSAGE, **{
                "retry-after-ms": AZ_RETRY_AFTER_MS, "retry-after": AZ_RETRY_AFTER_S,
                "x-ratelimit-remaining-tokens": "0"})
        elif deployment == AZ_DEP_FILTERED:
            self._send_json(400, {"error": {
                "message": AZ_FILTER_MESSAGE, "type": None, "param": "prompt",
                "code": "content_filter", "status": 400, "innererror": AZ_FILTER_INNERERROR}})
        elif deployment in AZ_CHAT_DEPLOYMENTS and operation == "chat/completions":
            if not req.get("stream"):
                self._send_body(200, azure_recordings().chat_body)
            elif deployment == AZ_DEP_ASYNC_FILTER:
                self._async_filter_stream()
            elif deployment == AZ_DEP_LATE_END:
                self._recorded_stream(req, end_gap=AZ_LATE_END_S)
            else:
                self._recorded_stream(req)
        elif deployment == AZ_DEP_EMBED and operation == "embeddings":
            self._embeddings(req)
        elif deployment in AZ_CHAT_DEPLOYMENTS | {AZ_DEP_EMBED}:
            self._error(400, "OperationNotSupported",
                        f"The {operation} operation does not work with the specified model. "
                        "Please choose different model and try again.")
        else:
            self._error(404, "DeploymentNotFound", AZ_DEPLOYMENT_NOT_FOUND_MESSAGE)

    def _stream_headers(self) -> dict[str, str]:
        h = self.provider_headers()
        h["x-accel-buffering"] = "no"
        return h

    def _recorded_stream(self, req: dict, end_gap: float | None = None) -> None:
        """The real recording; its usage chunk only when the request asked for it.
        [DONE] and the end of the body share one write unless `end_gap` is given."""
        rec = azure_recordings()
        self._start_stream(self._stream_headers())
        self._send_event(rec.prompt_filter_line)
        for line in rec.answer_lines:
            self._send_event(line)
        if (req.get("stream_options") or {}).get("include_usage"):
            self._send_event(rec.usage_line)
        self._end_stream(end_gap)

    def _async_filter_stream(self) -> None:
        self._start_stream(self._stream_headers())
        base = {"id": AZ_ASYNC_ID, "object": "chat.completion.chunk",
                "created": int(time.time()), "model": AZ_ASYNC_MODEL,
                "system_fingerprint": "fp_e2e_azure", "usage": None}
        blank = {"id": "", "object": "", "created": 0, "model": "", "usage": None}

        def event(payload: dict) -> None:
            self._send_event(json.dumps(payload).encode())

        def annotation(start: int, end: int) -> None:
            event(dict(blank, choices=[{
                "index": 0, "finish_reason": None, "content_filter_results": AZ_VERDICT,
                "content_filter_offsets": {"check_offset": start, "start_offset": start,
                                           "end_offset": end}}]))

        event(dict(blank, choices=[], prompt_filter_results=[
            {"prompt_index": 0, "content_filter_results": AZ_VERDICT}]))
        event(dict(base, choices=[{"index": 0, "finish_reason": None,
                                   "delta": {"role": "assistant", "content": ""}}]))
        half = len(AZ_ASYNC_PIECES) // 2
        for i, piece in enumerate(AZ_ASYNC_PIECES):
            if i == half:
                annotation(0, len("".join(AZ_ASYNC_PIECES[:half])))
            event(dict(base, choices=[{"index": 0, "finish_reason": None,
                                       "delta": {"content": piece}}]))
        event(dict(base, choices=[{"index": 0, "finish_reason": "stop", "delta": {}}]))
        annotation(len("".join(AZ_ASYNC_PIECES[:half])), len("".join(AZ_ASYNC_PIECES)))
        self._end_stream(None)

    def _embeddings(self, req: dict) -> None:
        inputs = embedding_inputs(req)
        data = embedding_data(req)
        tokens = sum(max(1, len(str(t)) // 4) for t in inputs)
        self._send_json(200, {"object": "list", "data": data, "model": AZ_EMBED_REPORTED,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class FakeAzureServer(RecordingServer):
    def __init__(self) -> None:
        super().__init__(FakeAzureHandler)
        self.violations: list[str] = []

    def route(self, rec: RecordedRequest) -> tuple[str, str] | None:
        """(deployment, operation) of an Azure deployments URL, else None."""
        path = rec.url_path
        if path.startswith(AZURE_APIM_PREFIX + "/"):
            path = path[len(AZURE_APIM_PREFIX):]
        rest = path.removeprefix("/openai/deployments/")
        if rest == path or "/" not in rest:
            return None
        deployment, operation = rest.split("/", 1)
        if not deployment or operation not in ("chat/completions", "embeddings"):
            return None
        return deployment, operation

    def check(self, rec: RecordedRequest) -> list[str]:
        """What the gateway got wrong in `rec` (also kept in `violations`)."""
        problems = []
        if self.route(rec) is None:
            problems.append(f"not an Azure deployments path: {rec.path}")
        versions = rec.query_values("api-version")
        if len(versions) != 1 or versions[0] not in AZURE_VERSIONS:
            problems.append(f"api-version {versions} in {rec.path}")
        if len(rec.headers.get("api-key", [])) != 1:
            problems.append(f"api-key headers: {len(rec.headers.get('api-key', []))}")
        elif rec.header("api-key") not in (AZURE_KEY, AZURE_WRONG_KEY):
            problems.append("api-key is not a configured Azure provider key")
        if "authorization" in rec.headers:
            problems.append("an Authorization header reached Azure")
        if problems:
            with self._lock:
                self.violations.extend(f"{rec.path}: {p}" for p in problems)
        return problems


# --------------------------------------------------------------------------------------
# The fake AWS Bedrock Runtime
# --------------------------------------------------------------------------------------

SHARED_VECTORS = REPO_ROOT.parent / "shared" / "vectors"
BEDROCK_FIXTURES = SHARED_FIXTURES / "vercel-ai" / "amazon-bedrock"
BEDROCK_CAPTURES = SHARED_VECTORS / "eventstream" / "bedrock-captures"
SIGV4_SUITE = SHARED_VECTORS / "sigv4" / "aws-sig-v4-test-suite"

BEDROCK_REGION = "us-east-1"
BEDROCK_SERVICE = "bedrock"  # the SigV4 signing name (not `bedrock-runtime`)
BEDROCK_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
# The model id as one percent-encoded path segment, as it must go on the wire.
BEDROCK_MODEL_SEGMENT = "anthropic.claude-3-haiku-20240307-v1%3A0"
BEDROCK_CONVERSE_PATH = f"/model/{BEDROCK_MODEL_SEGMENT}/converse"
BEDROCK_STREAM_PATH = f"/model/{BEDROCK_MODEL_SEGMENT}/converse-stream"
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
# Top-level members of a Converse request (`BRM:ConverseRequest`, modelId is the path).
CONVERSE_REQUEST_MEMBERS = {
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
    "additionalModelRequestFields", "additionalModelResponseFieldPaths", "promptVariables",
    "requestMetadata", "performanceConfig", "serviceTier", "outputConfig"}

# What the fake answers is chosen by a marker in the last user message's text, e.g.
# "[fake-bedrock:tool] What is the weather?"; without a marker: BR_TEXT.
BEDROCK_MARKER = re.compile(r"\[fake-bedrock:([a-z0-9-]+)\]")


def bedrock_marker(name: str) -> str:
    return f"[fake-bedrock:{name}]"


# -- Converse answers (non-streaming) ---------------------------------------------------
BR_TEXT = "text"                    # amazon-bedrock-text.json: end_turn
BR_TOOL = "tool"                    # issue-11363-...-tool-use.json: one toolUse, no text
BR_TOOL_NO_ARGS = "tool-no-args"    # amazon-bedrock-tool-no-args.json: text + toolUse {}
BR_TWO_TOOLS = "two-tools"          # amazon-bedrock-json-with-tool.1.json: two toolUse blocks
BR_MAX_TOKENS = "max-tokens"        # issue-17523-converse.json: max_tokens, no cache fields
BR_GUARDRAIL = "guardrail"          # amazon-bedrock-guard-content-intervened.json
BR_REASONING = "reasoning"          # amazon-bedrock-reasoning.json: reasoningContent + text
# Derived from real bodies (one field changed, see `bedrock_answer_body`): no recording
# has these stop reasons or non-zero cache counts.
BR_STOP_SEQUENCE = "stop-sequence"  # issue-11363-...-end-turn.json, stopReason stop_sequence
BR_CONTENT_FILTERED = "content-filtered"  # the guardrail body, stopReason content_filtered
BR_CACHE = "cache"                  # amazon-bedrock-text.json with cache read/write counts

BEDROCK_ANSWER_FILES = {
    BR_TEXT: "amazon-bedrock-text.json",
    BR_TOOL: "issue-11363-stop-sequence-null-tool-use.json",
    BR_TOOL_NO_ARGS: "amazon-bedrock-tool-no-args.json",
    BR_TWO_TOOLS: "amazon-bedrock-json-with-tool.1.json",
    BR_MAX_TOKENS: "issue-17523-converse.json",
    BR_GUARDRAIL: "amazon-bedrock-guard-content-intervened.json",
    BR_REASONING: "amazon-bedrock-reasoning.json",
    BR_STOP_SEQUENCE: "issue-11363-stop-sequence-null-end-turn.json",
    BR_CONTENT_FILTERED: "amazon-bedrock-guard-content-intervened.json",
    BR_CACHE: "amazon-bedrock-text.json",
}
BR_CACHE_READ = 1024   # the derived cache body's cacheReadInputTokens
BR_CACHE_WRITE = 256   # ... and cacheWriteInputTokens

# -- ConverseStream answers -----------------------------------------------------------
BRS_TEXT = "text"                   # envoy-converse-stream-text.bin, whole
BRS_TOOL = "tool"                   # envoy-converse-stream-text-tooluse.bin, whole
BRS_EXCEPTION = "stream-exception"  # 3 frames of the text capture, then the exception frame
BRS_EXCEPTION_FIRST = "stream-exception-first"  # the exception capture alone
BRS_TRUNCATED = "stream-truncated"  # the text capture cut inside its 4th frame; clean HTTP end
BRS_CORRUPT = "stream-corrupt"      # the text capture, one payload byte of its 4th frame flipped
BRS_FRAMES_BEFORE_BREAK = 3         # frames before the break: messageStart + 2 text deltas
BEDROCK_STREAM_FILES = {
    BRS_TEXT: "envoy-converse-stream-text.bin",
    BRS_TOOL: "envoy-converse-stream-text-tooluse.bin",
    "exception": "vercel-model-stream-error-exception.bin",
}

# -- Errors, as Bedrock sends them: status, `x-amzn-ErrorType`, `{"message": ...}` ----
BEDROCK_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
CORAL_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.coral.service/"
# Real (amazon-bedrock-empty-message-validation-error.json).
BR_VALIDATION_MESSAGE = ("The content field in the Message object at messages.1 is empty. Add a "
                         "ContentBlock object to the content field and try again.")
BEDROCK_ERRORS: dict[str, tuple[str, int, dict]] = {
    "validation": ("ValidationException", 400, {"message": BR_VALIDATION_MESSAGE}),
    "throttling": ("ThrottlingException", 429, {
        "message": "Too many requests, please wait before trying again."}),
    "quota": ("ServiceQuotaExceededException", 400, {
        "message": "Too many tokens per day, please wait before trying again."}),
    "access-denied": ("AccessDeniedException", 403, {
        "message": "You don't have access to the model with the specified model ID."}),
    "not-found": ("ResourceNotFoundException", 404, {
        "message": "Model not found. Check the model ID and try again."}),
    "model-timeout": ("ModelTimeoutException", 408, {
        "message": "Model has timed out in processing the request. Try your request again."}),
    "model-error": ("ModelErrorException", 424, {
        "message": "The model returned an error. Try your request again.",
        "originalStatusCode": 500,
        "resourceName": f"arn:aws:bedrock:{BEDROCK_REGION}::foundation-model/{BEDROCK_MODEL_ID}"}),
    "internal": ("InternalServerException", 500, {
        "message": "The system encountered an unexpected error during processing. "
                   "Try your request again."}),
    "unavailable": ("ServiceUnavailableException", 503, {
        "message": "Bedrock is unable to process your request."}),
    "not-ready": ("ModelNotReadyException", 429, {
        "message": "Model is not ready for inference. Wait and try your request again."}),
}
# Coral's front end refuses a request it cannot authenticate (AWS's words; the
# signature message continues with the canonical request and string to sign the
# service expected, which quote the signed headers, session token included).
BR_SIGNATURE_MESSAGE = ("The request signature we calculated does not match the signature you "
                        "provided.")
BR_SIGNATURE_MESSAGE_TAIL = (" Check your AWS Secret Access Key and signing method. Consult the "
                             "service documentation for details.")
BR_BAD_TOKEN_MESSAGE = "The security token included in the request is invalid."


@functools.cache
def bedrock_answer_body(marker: str) -> bytes:
    """The Converse body the fake answers for `marker`: a recording's bytes as they
    are, or (for the three derived answers) that recording with one field changed."""
    raw = (BEDROCK_FIXTURES / BEDROCK_ANSWER_FILES[marker]).read_bytes()
    if marker not in (BR_STOP_SEQUENCE, BR_CONTENT_FILTERED, BR_CACHE):
        return raw
    body = json.loads(raw)
    if marker == BR_STOP_SEQUENCE:
        body["stopReason"] = "stop_sequence"
    elif marker == BR_CONTENT_FILTERED:
        body["stopReason"] = "content_filtered"
    else:
        usage = body["usage"]
        for key, value in (("cacheRead", BR_CACHE_READ), ("cacheWrite", BR_CACHE_WRITE)):
            usage[f"{key}InputTokens"] = usage[f"{key}InputTokenCount"] = value
        usage["totalTokens"] = (usage["inputTokens"] + usage["outputTokens"]
                                + BR_CACHE_READ + BR_CACHE_WRITE)
    return json.dumps(body, indent=2).encode()


def eventstream_frames(data: bytes) -> list[bytes]:
    """`data` cut into event-stream messages by their length prelude (no checks)."""
    frames, offset = [], 0
    while offset < len(data):
        (total,) = struct.unpack_from(">I", data, offset)
        frames.append(data[offset:offset + total])
        offset += total
    return frames


def eventstream_frame_ok(frame: bytes) -> bool:
    """Whether both CRCs of one event-stream message hold."""
    if len(frame) < 16:
        return False
    total, headers_len, prelude_crc = struct.unpack_from(">III", frame, 0)
    (message_crc,) = struct.unpack_from(">I", frame, len(frame) - 4)
    return (total == len(frame) and headers_len <= total - 16
            and zlib.crc32(frame[:8]) == prelude_crc and zlib.crc32(frame[:-4]) == message_crc)


@functools.cache
def bedrock_capture(name: str) -> bytes:
    return (BEDROCK_CAPTURES / BEDROCK_STREAM_FILES[name]).read_bytes()


@functools.cache
def bedrock_stream_bytes(marker: str) -> bytes:
    """The event-stream body the fake sends for `marker` (made of the real captures)."""
    if marker in (BRS_TEXT, BRS_TOOL):
        return bedrock_capture(marker)
    text = eventstream_frames(bedrock_capture(BRS_TEXT))
    before = b"".join(text[:BRS_FRAMES_BEFORE_BREAK])
    broken = text[BRS_FRAMES_BEFORE_BREAK]
    if marker == BRS_EXCEPTION:
        return before + bedrock_capture("exception")
    if marker == BRS_EXCEPTION_FIRST:
        return bedrock_capture("exception")
    if marker == BRS_TRUNCATED:
        return before + broken[:len(broken) // 2]
    if marker == BRS_CORRUPT:
        damaged = bytearray(broken)
        damaged[len(damaged) - 10] ^= 0x20  # inside the JSON payload: the message CRC fails
        return before + bytes(damaged) + b"".join(text[BRS_FRAMES_BEFORE_BREAK + 1:])
    raise KeyError(marker)


# Write sizes for stream bodies: odd, small and large, so frames (and their 12-byte
# preludes) are split across HTTP chunks and TCP segments anywhere.
STREAM_WRITE_SIZES = (1, 5, 12, 61, 3, 97, 17, 150, 29, 7, 233)


def odd_pieces(data: bytes) -> Iterator[bytes]:
    offset, i = 0, 0
    while offset < len(data):
        size = STREAM_WRITE_SIZES[i % len(STREAM_WRITE_SIZES)]
        yield data[offset:offset + size]
        offset += size
        i += 1


# -- SigV4, verified independently with botocore --------------------------------------

SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
SIGV4_MAX_SKEW_S = 300  # AWS refuses a request signed more than 5 minutes off


class _AsReceivedSigV4(SigV4Auth):
    """botocore's SigV4 over exactly the headers a request's SignedHeaders lists,
    with the values it arrived with (botocore would pick its own set otherwise)."""

    def __init__(self, credentials: Credentials, service: str, region: str,
                 signed: list[tuple[str, str]]) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name, value in self._signed:
            headers[name.lower()] = value  # appends: repeated headers stay repeated
        return headers


@dataclass
class SigV4Verdict:
    """What a SigV4 verifier concluded: `error` is the AWS exception name when the
    request is refused, and `reason` says why (for test diagnostics)."""

    error: str | None
    reason: str
    canonical_request: str = ""
    string_to_sign: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def message(self) -> str:
        """The message AWS would answer with."""
        if self.error == "MissingAuthenticationTokenException":
            return "Missing Authentication Token"
        if self.error == "UnrecognizedClientException":
            return BR_BAD_TOKEN_MESSAGE
        if self.error == "InvalidSignatureException" and self.canonical_request:
            return (BR_SIGNATURE_MESSAGE + BR_SIGNATURE_MESSAGE_TAIL
                    + "\n\nThe Canonical String for this request should have been\n'"
                    + self.canonical_request + "'\n\nThe String-to-Sign should have been\n'"
                    + self.string_to_sign + "'\n")
        return self.reason


def parse_sigv4_authorization(value: str) -> dict[str, str] | None:
    """{Credential, SignedHeaders, Signature} of an `AWS4-HMAC-SHA256 ...` header."""
    if not value.startswith(SIGV4_ALGORITHM + " "):
        return None
    fields: dict[str, str] = {}
    for part in value[len(SIGV4_ALGORITHM) + 1:].split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or key in fields:
            return None
        fields[key] = val
    return fields if set(fields) == {"Credential", "SignedHeaders", "Signature"} else None


def verify_sigv4(method: str, path: str, headers: list[tuple[str, str]], body: bytes, *,
                 credentials: Credentials, region: str, service: str = BEDROCK_SERVICE,
                 now: datetime | None = None) -> SigV4Verdict:
    """Checks a request as received — method, the raw path, the headers and the body
    — against AWS's SigV4 rules, recomputing its signature with botocore.

    The canonical URI is the raw path encoded once more (botocore's non-S3 rule, and
    AWS's: a model id's `%3A` on the wire is `%253A` in the canonical request). With
    a session token the request must carry it in `x-amz-security-token`, signed
    (PROVIDERS.md §3.9); without one it must carry none.
    """
    def refuse(error: str, reason: str, creq: str = "", sts: str = "") -> SigV4Verdict:
        return SigV4Verdict(error, reason, creq, sts)

    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    auths = by_name.get("authorization", [])
    if not auths:
        return refuse("MissingAuthenticationTokenException", "no Authorization header")
    fields = parse_sigv4_authorization(auths[0]) if len(auths) == 1 else None
    if fields is None:
        return refuse("IncompleteSignatureException", f"malformed Authorization: {auths}")
    scope = fields["Credential"].split("/")
    if len(scope) != 5:
        return refuse("IncompleteSignatureException", f"malformed Credential: {scope}")
    access_key, scope_date, scope_region, scope_service, terminator = scope
    if access_key != credentials.access_key:
        return refuse("UnrecognizedClientException", f"unknown access key id {access_key}")
    if (scope_region, scope_service, terminator) != (region, service, "aws4_request"):
        return refuse("InvalidSignatureException",
                      f"credential scope {'/'.join(scope[1:])}: expected region {region}, "
                      f"service {service}, aws4_request")
    dates = by_name.get("x-amz-date", [])
    try:
        (amz_date,) = dates
        signed_at = datetime.strptime(amz_date, SIGV4_TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return refuse("IncompleteSignatureException", f"x-amz-date headers {dates}")
    if amz_date[:8] != scope_date:
        return refuse("InvalidSignatureException",
                      f"credential scope date {scope_date} is not x-amz-date's {amz_date}")
    now = now or datetime.now(timezone.utc)
    if abs((now - signed_at).total_seconds()) > SIGV4_MAX_SKEW_S:
        return refuse("InvalidSignatureException", f"signature expired: signed at {amz_date}")
    signed = fields["SignedHeaders"].split(";")
    if signed != sorted(set(signed)) or any(n != n.lower() or not n for n in signed):
        return refuse("InvalidSignatureException", f"SignedHeaders not lower-case, sorted, "
                      f"unique: {fields['SignedHeaders']}")
    missing = [n for n in ("host", "x-amz-date") if n not in signed]
    missing += [n for n in signed if n not in by_name]
    if missing:
        return refuse("InvalidSignatureException", f"headers not signed or not sent: {missing}")
    tokens = by_name.get("x-amz-security-token", [])
    if credentials.token:
        if tokens != [credentials.token]:
            return refuse("UnrecognizedClientException",
                          f"{len(tokens)} x-amz-security-token header(s), not the session token")
        if "x-amz-security-token" not in signed:
            return refuse("InvalidSignatureException", "x-amz-security-token is not signed")
    elif tokens:
        return refuse("UnrecognizedClientException",
                      "x-amz-security-token sent with long-term credentials")
    content_sha = by_name.get("x-amz-content-sha256")
    if content_sha is not None and content_sha != [hashlib.sha256(body).hexdigest()]:
        return refuse("InvalidSignatureException",
                      f"x-amz-content-sha256 {content_sha} is not the body's SHA-256")
    (host,) = by_name["host"][:1]
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=body)
    request.context["timestamp"] = amz_date
    signer = _AsReceivedSigV4(credentials, service, region,
                              [(n, v) for n, v in headers if n.lower() in signed])
    creq = signer.canonical_request(request)
    sts = signer.string_to_sign(request, creq)
    expected = signer.signature(sts, request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return refuse("InvalidSignatureException",
                      f"signature mismatch; the fake's canonical request was:\n{creq}", creq, sts)
    return SigV4Verdict(None, "valid", creq, sts)


def bedrock_credentials(secret: str = BEDROCK_SECRET, token: str | None = None) -> Credentials:
    return Credentials(BEDROCK_ACCESS_KEY_ID, secret, token)


class FakeBedrockHandler(RecordingHandler):
    """Bedrock Runtime: `POST /model/{modelId}/converse` and `/converse-stream`.

    Like the real service it first authenticates the request (SigV4 or a Bedrock API
    key, whichever the server was made with) and answers 403 when it cannot, then
    404 to a path it does not serve and 400 to a model id it does not know. Every
    request keeps the verdict in `rec.auth_problem` (None when accepted) and the
    `x-amzn-RequestId` of its answer in `rec.amzn_request_id`.
    """

    server: "FakeBedrockServer"
    amzn_request_id = ""

    def provider_headers(self) -> dict[str, str]:
        return {"x-amzn-RequestId": self.amzn_request_id}

    def _aws_error(self, name: str, status: int, body: dict, namespace: str) -> None:
        self._send_json(status, body, {"x-amzn-ErrorType": f"{name}:{namespace}"})

    def do_GET(self) -> None:  # noqa: N802
        self.amzn_request_id = str(uuid.uuid4())
        self._record("GET")
        self._send_json(404, {"Output": {
            "__type": "com.amazon.coral.service#UnknownOperationException"}, "Version": "1.0"})

    def do_POST(self) -> None:  # noqa: N802
        self.amzn_request_id = str(uuid.uuid4())
        rec = self._record("POST", self._read_body())
        rec.amzn_request_id = self.amzn_request_id
        problem = self.server.authenticate(rec)
        rec.auth_problem = None if problem.ok else f"{problem.error}: {problem.reason}"
        if not problem.ok:
            self._aws_error(problem.error, 403, {"message": problem.message()},
                            CORAL_ERROR_NAMESPACE)
            return
        route = bedrock_route(rec.path)
        if route is None:
            self._send_json(404, {"Output": {
                "__type": "com.amazon.coral.service#UnknownOperationException"},
                "Version": "1.0"})
            return
        model_id, operation = route
        if model_id != BEDROCK_MODEL_ID or not isinstance(rec.json, dict):
            self._aws_error("ValidationException", 400,
                            {"message": "The provided model identifier is invalid."}
                            if model_id != BEDROCK_MODEL_ID else
                            {"message": "The request body is not a JSON object."},
                            BEDROCK_ERROR_NAMESPACE)
            return
        marker = converse_marker(rec.json) or BR_TEXT
        if marker in BEDROCK_ERRORS:
            name, status, body = BEDROCK_ERRORS[marker]
            self._aws_error(name, status, body, BEDROCK_ERROR_NAMESPACE)
        elif operation == "converse" and marker in BEDROCK_ANSWER_FILES:
            self._send_body(200, bedrock_answer_body(marker))
        elif operation == "converse-stream" and marker in (
                BRS_TEXT, BRS_TOOL, BRS_EXCEPTION, BRS_EXCEPTION_FIRST, BRS_TRUNCATED,
                BRS_CORRUPT):
            self._send_eventstream(bedrock_stream_bytes(marker))
        else:
            self._aws_error("ValidationException", 400, {
                "message": f"fake Bedrock: no {operation} answer for marker {marker!r}"},
                BEDROCK_ERROR_NAMESPACE)

    def _send_eventstream(self, data: bytes) -> None:
        """`data` as a chunked body in many small writes of odd sizes."""
        self.send_response(200)
        self.send_header("content-type", EVENTSTREAM_CONTENT_TYPE)
        self.send_header("transfer-encoding", "chunked")
        for name, value in self.provider_headers().items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        for piece in odd_pieces(data):
            self._send_chunk(piece)
            time.sleep(0.001)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def bedrock_route(path: str) -> tuple[str, str] | None:
    """(model id, operation) of `/model/{percent-encoded model id}/{operation}`."""
    m = re.fullmatch(r"/model/([^/?]+)/(converse|converse-stream)", path)
    return (urllib.parse.unquote(m.group(1)), m.group(2)) if m else None


def converse_marker(body: dict) -> str | None:
    """The `[fake-bedrock:...]` marker in the text of the last user message, if any."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            texts = [block.get("text") for block in message.get("content") or []
                     if isinstance(block, dict) and isinstance(block.get("text"), str)]
            found = BEDROCK_MARKER.search(" ".join(texts))
            return found.group(1) if found else None
    return None


class FakeBedrockServer(RecordingServer):
    """A Bedrock Runtime in `region` that accepts either SigV4 with `credentials` or
    the Bedrock API key `api_key` (exactly one). What a correct gateway never sends
    is also noted in `violations`."""

    def __init__(self, *, credentials: Credentials | None = None, api_key: str | None = None,
                 region: str = BEDROCK_REGION) -> None:
        assert (credentials is None) != (api_key is None)
        super().__init__(FakeBedrockHandler)
        self.credentials = credentials
        self.api_key = api_key
        self.region = region
        self.violations: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # a client hanging up is no error

    def authenticate(self, rec: RecordedRequest) -> SigV4Verdict:
        problems = []
        if not (rec.header("content-type") or "").startswith("application/json"):
            problems.append(f"content-type {rec.header('content-type')!r}")
        if self.api_key is not None:
            amz = sorted(n for n in rec.headers if n.startswith("x-amz-"))
            if amz:
                problems.append(f"SigV4 headers {amz} sent with a Bedrock API key")
            verdict = (SigV4Verdict(None, "valid API key")
                       if rec.headers.get("authorization") == [f"Bearer {self.api_key}"]
                       else SigV4Verdict("UnrecognizedClientException",
                                         "not `Authorization: Bearer <the API key>`"))
        else:
            verdict = verify_sigv4(rec.method, rec.path, rec.header_list, rec.body,
                                   credentials=self.credentials, region=self.region)
        if problems:
            with self._lock:
                self.violations.extend(f"{rec.path}: {p}" for p in problems)
        return verdict


# -- What the recordings say (copied by hand; test_bedrock_fake.py checks each value
#    against the files, so a test never compares the gateway with itself) -----------

@dataclass(frozen=True)
class BedrockAnswer:
    """What an OpenAI client must get for one Converse answer."""

    content: str | None
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cache_read: int = 0
    cache_write: int = 0
    tool_calls: tuple[tuple[str, str, Any], ...] = ()  # (toolUseId, name, input)
    reasoning: str | None = None  # reasoningContent text (message.reasoning_content)


BR_TEXT_CONTENT = ('Let me count the "r"s in "strawberry":\n\ns-t-**r**-a-w-b-e-**r**-**r**-y'
                   '\n\nThere are **3** "r"s in "strawberry."')
BR_GUARDRAIL_CONTENT = "Sorry, the model cannot answer this question."
BR_EXPECTED: dict[str, BedrockAnswer] = {
    BR_TEXT: BedrockAnswer(BR_TEXT_CONTENT, "stop", 22, 57),
    BR_TOOL: BedrockAnswer(None, "tool_calls", 407, 33, tool_calls=(
        ("tooluse_rTk04lpyTTTvtXcoOyVT6p", "weather", {"location": "Seattle"}),)),
    BR_TOOL_NO_ARGS: BedrockAnswer("I'll update the issue list for you.", "tool_calls", 100, 25,
                                   tool_calls=(("tool-use-id", "updateIssueList", {}),)),
    # Two text blocks around the tool uses: `content` is checked piece by piece.
    BR_TWO_TOOLS: BedrockAnswer("Let me call a tool first.|Now the JSON.", "tool_calls", 22, 48,
                                tool_calls=(("tool-1", "get-weather", {"location": "SF"}),
                                            ("json-tool-id", "json", {"result": "data"}))),
    BR_MAX_TOKENS: BedrockAnswer("Hello! How can I assist you today? If", "length", 2, 10),
    BR_GUARDRAIL: BedrockAnswer(BR_GUARDRAIL_CONTENT, "content_filter", 18, 12),
    BR_REASONING: BedrockAnswer('There are **3** r\'s in "strawberry":\n\n'
                                "1. st**r**awbe**r****r**y", "stop", 51, 78, reasoning=(
                                    'Let me count the r\'s in "strawberry":\n\n'
                                    "s-t-r-a-w-b-e-r-r-y\n\nThere are 3 r's.")),
    BR_STOP_SEQUENCE: BedrockAnswer("OK", "stop", 12, 4),
    BR_CONTENT_FILTERED: BedrockAnswer(BR_GUARDRAIL_CONTENT, "content_filter", 18, 12),
    BR_CACHE: BedrockAnswer(BR_TEXT_CONTENT, "stop", 22, 57, BR_CACHE_READ, BR_CACHE_WRITE),
}
# envoy-converse-stream-text.bin: one contentBlockDelta per piece.
BRS_TEXT_PIECES = ["Don", "'t worry, I'm here to help. It",
                   " seems like you're testing my ability to respond appropriately",
                   ". If you'd like to continue the test,", " I'm ready."]
BRS_TEXT_USAGE = (41, 36, 77)  # inputTokens, outputTokens, totalTokens
# envoy-converse-stream-text-tooluse.bin.
BRS_TOOL_TEXT = ('To calculate the cosine of 7, we can use the "cosine" function that is '
                 "available to us. Let's use this function to get the result.")
BRS_TOOL_ID = "tooluse_QklrEHKjRu6Oc4BQUfy7ZQ"
BRS_TOOL_NAME = "cosine"
BRS_TOOL_INPUT = {"x": 7}
BRS_TOOL_USAGE = (386, 75, 461)
# vercel-model-stream-error-exception.bin: one `modelStreamErrorException` frame.
BRS_EXCEPTION_TYPE = "modelStreamErrorException"
BRS_EXCEPTION_PAYLOAD = {"message": "Model Stream Error", "originalStatusCode": 500,
                         "originalMessage": "The model stream failed."}


# --------------------------------------------------------------------------------------
# The gateway process
# --------------------------------------------------------------------------------------

def gateway_binary() -> Path:
    path = Path(os.environ.get("SWITCHYARD_BIN", "target/debug/switchyard"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


class Gateway:
    """A running `switchyard -c CONFIG` with its stdout (access log) captured.

    `env` is added to the environment it runs in, `args` go before `-c` (`["-u"]`
    for an upgrade's successor, which is started with `wait_ready=False`: it does not
    serve until its predecessor hands the sockets over)."""

    def __init__(self, binary: Path, config: dict, workdir: Path, *,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 wait_ready: bool = True) -> None:
        self.binary = binary
        self.config = config
        self.workdir = workdir
        self.env = dict(env or {})
        self.args = tuple(args)
        self.wait_ready = wait_ready
        self.proc: subprocess.Popen | None = None
        self._stdout: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.stderr_path = workdir / "stderr.log"
        self.config_path = workdir / "switchyard.yaml"

    @property
    def base_url(self) -> str:
        return f"http://{self.config['listen']}/v1"

    @property
    def origin(self) -> str:
        return f"http://{self.config['listen']}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.config['admin_listen']}"

    def metrics_text(self) -> str:
        """The admin listener's /metrics, as Prometheus text."""
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=5) as response:
            assert response.status == 200
            return response.read().decode("utf-8")

    def start(self) -> None:
        config_path = self.config_path
        # JSON is YAML: no YAML library needed, and no quoting surprises.
        config_path.write_text(json.dumps(self.config, indent=2))
        self._stderr_file = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.update(self.env)
        self.proc = subprocess.Popen(
            [str(self.binary), *self.args, "-c", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            cwd=str(self.workdir),
            env=env,
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        if self.wait_ready:
            self._wait_ready()

    def _read_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self._stdout.append(line)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = self.admin_url + "/readyz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"switchyard exited with {self.proc.returncode} before it was ready:\n"
                    + self.stderr_text())
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"switchyard not ready within {READY_TIMEOUT_S}s:\n" + self.stderr_text())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # by PID: only the process we started
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        if self._reader:
            self._reader.join(timeout=2)
        self._stderr_file.close()

    # -- output ----------------------------------------------------------------------

    def stdout_lines(self) -> list[str]:
        with self._lock:
            return list(self._stdout)

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def access_log(self) -> list[dict]:
        out = []
        for line in self.stdout_lines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def log_for(self, request_id: str, timeout: float = LOG_WAIT_S) -> dict:
        """The access-log line of `request_id` (waits: the line follows the response)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [e for e in self.access_log() if e.get("request_id") == request_id]
            if lines:
                assert len(lines) == 1, f"more than one access-log line for {request_id}: {lines}"
                return lines[0]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no access-log line for request_id {request_id!r}; stdout was:\n"
                    + "\n".join(self.stdout_lines()[-20:]))
            time.sleep(0.02)

    # -- process control and state (the reload, drain and upgrade tests) -------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def send_signal(self, sig: int) -> None:
        """Sends `sig` to the gateway, by its PID (only the process we started)."""
        assert self.proc is not None and self.proc.poll() is None, "the gateway is not running"
        self.proc.send_signal(sig)

    def write_config(self, config: dict | str, *, rename: bool = False) -> None:
        """Writes `config` (a dict, as JSON, or raw text) over the file the gateway was
        started with: in place (`open(path, 'w')`), or as a new file renamed over it.
        `self.config` is left alone: it still says where the gateway listens."""
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        if rename:
            tmp = self.config_path.with_name(f".{self.config_path.name}.{secrets.token_hex(4)}")
            tmp.write_text(text)
            os.replace(tmp, self.config_path)
        else:
            with open(self.config_path, "w") as f:
                f.write(text)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status once the process has exited, or None after `timeout`."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of /metrics (None when absent): `name` as exported (with
        `_total`), with exactly these labels."""
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return None

    def readyz(self) -> tuple[int, Any]:
        """(status, JSON body or raw text) of the admin listener's /readyz."""
        try:
            with urllib.request.urlopen(self.admin_url + "/readyz", timeout=5) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode("utf-8", "replace")

    def stderr_lines_with(self, text: str) -> list[str]:
        """The stderr lines that contain `text`."""
        return [line for line in self.stderr_text().splitlines() if text in line]

    def wait_stderr(self, text: str, count: int = 1, timeout: float = LOG_WAIT_S) -> list[str]:
        """Waits (bounded) until at least `count` stderr lines contain `text`; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.stderr_lines_with(text)
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(lines)} stderr line(s) with {text!r} after "
                                     f"{timeout}s, not {count}; stderr ends with:\n"
                                     + "\n".join(self.stderr_text().splitlines()[-20:]))
            time.sleep(0.02)


def azure_provider(origin: str, api_key: str, api_version: str = AZURE_API_VERSION) -> dict:
    return {"type": "azure", "endpoint": origin, "api_key": api_key, "api_version": api_version}


def azure_target(provider: str, deployment: str, api_version: str | None = None) -> dict:
    target = {"provider": provider, "deployment": deployment}
    if api_version:
        target["api_version"] = api_version
    return {"targets": [target]}


def gateway_config(upstream_base_url: str, azure_origin: str, workdir: Path) -> dict:
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "max_request_bytes": MAX_REQUEST_BYTES,
        "keys": [
            {"name": "e2e-full", "key": FULL_KEY},
            {"name": "e2e-restricted", "key": RESTRICTED_KEY, "models": ["mock-*"]},
        ],
        "providers": {
            "demo": {"type": "mock"},
            "fake-openai": {"type": "openai", "base_url": upstream_base_url,
                            "api_key": PROVIDER_KEY},
            "azure-east": azure_provider(azure_origin, AZURE_KEY),
            "azure-apim": azure_provider(azure_origin + AZURE_APIM_PREFIX, AZURE_KEY,
                                         AZURE_LEGACY_VERSION),
            "azure-badkey": azure_provider(azure_origin, AZURE_WRONG_KEY),
        },
        "models": {
            "mock-chat": {"targets": [{"provider": "demo", "model": "mock-chat-1"}]},
            "mock-embed": {"targets": [{"provider": "demo", "model": "mock-embed-1"}]},
            "gpt-4o": {"targets": [{
                "provider": "fake-openai", "model": UP_CHAT,
                "price": {"input_per_mtok": GPT4O_PRICE_IN, "output_per_mtok": GPT4O_PRICE_OUT},
            }]},
            "gpt-bad-request": {"targets": [{"provider": "fake-openai", "model": UP_BAD_REQUEST}]},
            "gpt-upstream-401": {"targets": [{"provider": "fake-openai", "model": UP_UNAUTHORIZED}]},
            "text-embedding": {"targets": [{"provider": "fake-openai", "model": UP_EMBED}]},
            # Azure (keep AZURE_MODELS in step).
            "az-gpt": azure_target("azure-east", AZ_DEP_CHAT),
            "az-gpt-preview": azure_target("azure-east", AZ_DEP_CHAT_PREVIEW,
                                           AZURE_PREVIEW_VERSION),
            "az-gpt-legacy": azure_target("azure-apim", AZ_DEP_CHAT_LEGACY),
            "az-gpt-async-filter": azure_target("azure-east", AZ_DEP_ASYNC_FILTER),
            "az-embed": azure_target("azure-east", AZ_DEP_EMBED),
            "az-gpt-busy": azure_target("azure-east", AZ_DEP_BUSY),
            "az-gpt-filtered": azure_target("azure-east", AZ_DEP_FILTERED),
            "az-gpt-deleted": azure_target("azure-east", AZ_DEP_DELETED),
            "az-gpt-badkey": azure_target("azure-badkey", AZ_DEP_CHAT),
            "az-gpt-late-end": azure_target("azure-east", AZ_DEP_LATE_END,
                                            AZURE_PREVIEW_VERSION),
        },
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
    }


ROUTING = {"timeouts": {"connect": "1s", "first_byte": "5s", "idle": "5s", "total": "10s"}}


def pingora_settings(workdir: Path) -> dict:
    return {
        "threads": 2,
        "pid_file": str(workdir / "switchyard.pid"),
        "upgrade_sock": str(workdir / "upgrade.sock"),
        "grace_period_seconds": 0,
        "graceful_shutdown_timeout_seconds": 1,
    }


# Bedrock providers of the Bedrock tests' gateway, each in front of its own fake.
BEDROCK_PROVIDER = "bedrock-us"            # STS credentials: key id, secret, session token
BEDROCK_IAM_PROVIDER = "bedrock-iam"       # a long-term access key: no session token
BEDROCK_BAD_SECRET_PROVIDER = "bedrock-badsecret"  # BEDROCK_PROVIDER's fake, wrong secret
BEDROCK_APIKEY_PROVIDER = "bedrock-apikey"  # a Bedrock API key (bearer)
# Public model names, each with one target: BEDROCK_MODEL_ID on one of those providers.
BR_MODEL = "br-haiku"
BR_MODEL_ERRORS = "br-haiku-errors"  # same provider and model id, its own target state
BR_MODEL_ERRORS_TARGET = "haiku-errors"
BR_MODEL_IAM = "br-haiku-iam"
BR_MODEL_BAD_SECRET = "br-haiku-badsecret"
BR_MODEL_APIKEY = "br-haiku-apikey"


def bedrock_provider(origin: str, **auth: str) -> dict:
    return {"type": "bedrock", "region": BEDROCK_REGION, "endpoint": origin, **auth}


def bedrock_gateway_config(sts_origin: str, iam_origin: str, apikey_origin: str,
                           workdir: Path) -> dict:
    def target(provider: str, name: str | None = None) -> dict:
        t = {"provider": provider, "model": BEDROCK_MODEL_ID}
        if name:
            t["name"] = name
        return {"targets": [t]}

    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "max_request_bytes": MAX_REQUEST_BYTES,
        "keys": [{"name": "e2e-full", "key": FULL_KEY}],
        "providers": {
            BEDROCK_PROVIDER: bedrock_provider(
                sts_origin, access_key_id=BEDROCK_ACCESS_KEY_ID,
                secret_access_key=BEDROCK_SECRET, session_token=BEDROCK_SESSION_TOKEN),
            BEDROCK_IAM_PROVIDER: bedrock_provider(
                iam_origin, access_key_id=BEDROCK_ACCESS_KEY_ID,
                secret_access_key=BEDROCK_SECRET),
            BEDROCK_BAD_SECRET_PROVIDER: bedrock_provider(
                sts_origin, access_key_id=BEDROCK_ACCESS_KEY_ID,
                secret_access_key=BEDROCK_WRONG_SECRET, session_token=BEDROCK_SESSION_TOKEN),
            BEDROCK_APIKEY_PROVIDER: bedrock_provider(apikey_origin, api_key=BEDROCK_API_KEY),
        },
        "models": {
            BR_MODEL: target(BEDROCK_PROVIDER),
            BR_MODEL_ERRORS: target(BEDROCK_PROVIDER, BR_MODEL_ERRORS_TARGET),
            BR_MODEL_IAM: target(BEDROCK_IAM_PROVIDER),
            BR_MODEL_BAD_SECRET: target(BEDROCK_BAD_SECRET_PROVIDER),
            BR_MODEL_APIKEY: target(BEDROCK_APIKEY_PROVIDER),
        },
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
    }


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------

@contextlib.contextmanager
def serving(server: RecordingServer) -> Iterator[RecordingServer]:
    """Runs `server` on a thread for the duration of the block."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port that refuses connections: bound (so nothing else takes it)
    and never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeOpenAIServer]:
    with serving(FakeOpenAIServer()) as server:
        yield server


@pytest.fixture(scope="session")
def fake_azure() -> Iterator[FakeAzureServer]:
    azure_recordings()  # fail early and clearly when the recordings are missing
    with serving(FakeAzureServer()) as server:
        yield server


@pytest.fixture(scope="session")
def start_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[dict], Gateway]]:
    """Starts gateways with a given config; stops every one at the end of the session."""
    binary = gateway_binary()
    if not binary.is_file():
        pytest.fail(f"gateway binary {binary} not found: run `cargo build` or set SWITCHYARD_BIN")
    started: list[Gateway] = []

    def start(config: dict, workdir: Path | None = None, **options: Any) -> Gateway:
        workdir = workdir or tmp_path_factory.mktemp("gateway")
        gw = Gateway(binary, config, workdir, **options)
        started.append(gw)
        gw.start()
        return gw

    yield start
    for gw in started:
        gw.stop()


def start_on_free_ports(start_gateway, tmp_path_factory: pytest.TempPathFactory,
                        make_config: Callable[[Path], dict], **options: Any) -> Gateway:
    # Free ports are picked before the process binds them; retry on the rare race.
    last_error: Exception | None = None
    for _ in range(3):
        workdir = tmp_path_factory.mktemp("gateway")
        try:
            return start_gateway(make_config(workdir), workdir, **options)
        except RuntimeError as e:
            last_error = e
    raise RuntimeError(f"could not start the gateway: {last_error}")


@pytest.fixture(scope="session")
def gateway(start_gateway, fake_upstream: FakeOpenAIServer, fake_azure: FakeAzureServer,
            tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return start_on_free_ports(start_gateway, tmp_path_factory, lambda workdir: gateway_config(
        fake_upstream.base_url, fake_azure.origin, workdir))


@pytest.fixture(scope="session")
def fake_bedrock() -> Iterator[FakeBedrockServer]:
    """Bedrock that wants SigV4 with BEDROCK_SECRET and BEDROCK_SESSION_TOKEN."""
    with serving(FakeBedrockServer(credentials=bedrock_credentials(
            token=BEDROCK_SESSION_TOKEN))) as server:
        yield server


@pytest.fixture(scope="session")
def fake_bedrock_iam() -> Iterator[FakeBedrockServer]:
    """Bedrock that wants SigV4 with BEDROCK_SECRET and no session token."""
    with serving(FakeBedrockServer(credentials=bedrock_credentials())) as server:
        yield server


@pytest.fixture(scope="session")
def fake_bedrock_apikey() -> Iterator[FakeBedrockServer]:
    """Bedrock that wants `Authorization: Bearer BEDROCK_API_KEY`."""
    with serving(FakeBedrockServer(api_key=BEDROCK_API_KEY)) as server:
        yield server


@pytest.fixture(scope="session")
def bedrock_gateway(start_gateway, fake_bedrock: FakeBedrockServer,
                    fake_bedrock_iam: FakeBedrockServer, fake_bedrock_apikey: FakeBedrockServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    """A gateway of its own, so the rest of the suite does not depend on Bedrock."""
    return start_on_free_ports(start_gateway, tmp_path_factory, lambda workdir: (
        bedrock_gateway_config(fake_bedrock.origin, fake_bedrock_iam.origin,
                               fake_bedrock_apikey.origin, workdir)))


def make_client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=10.0)


def make_azure_client(gateway: Gateway, key: str, *, api_version: str = AZURE_API_VERSION,
                      bearer: bool = False) -> openai.AzureOpenAI:
    """The `AzureOpenAI` SDK pointed at the gateway's Azure-shaped endpoint: the key
    goes in `api-key`, or (bearer=True, as Entra ID tokens do) `Authorization: Bearer`."""
    auth = {"azure_ad_token": key} if bearer else {"api_key": key}
    return openai.AzureOpenAI(azure_endpoint=gateway.origin, api_version=api_version,
                              max_retries=0, timeout=10.0, **auth)


@pytest.fixture(scope="session")
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = make_client(gateway, FULL_KEY)
    yield c
    c.close()


@pytest.fixture(scope="session")
def restricted_client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = make_client(gateway, RESTRICTED_KEY)
    yield c
    c.close()


@pytest.fixture(scope="session")
def azure_client(gateway: Gateway) -> Iterator[openai.AzureOpenAI]:
    c = make_azure_client(gateway, FULL_KEY)
    yield c
    c.close()


@pytest.fixture(scope="session")
def bedrock_client(bedrock_gateway: Gateway) -> Iterator[openai.OpenAI]:
    c = make_client(bedrock_gateway, FULL_KEY)
    yield c
    c.close()


def assert_no_secret(text: str, *extra: str) -> None:
    for secret in ALL_SECRETS + extra:
        assert secret not in text, f"a secret ({secret[:12]}...) appears in: {text[:500]}"

