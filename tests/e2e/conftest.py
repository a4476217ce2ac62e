"""End-to-end fixtures: the real gateway binary, a fake OpenAI upstream, SDK clients.

The gateway runs as `switchyard -c CONFIG.yaml` on free 127.0.0.1 ports with a
config written for the session. Two kinds of provider sit behind it:

* `demo` (`type: mock`): the gateway's built-in mock, no upstream at all;
* `fake-openai` (`type: openai`): a small OpenAI-compatible HTTP/1.1 server written
  here (threads, keep-alive, TCP_NODELAY) that records every request it receives,
  so tests can check what reached the upstream. Its behaviour is chosen by the
  upstream model name the gateway writes into the body (see `FakeOpenAI`);
* `azure-*` (`type: azure`): a fake Azure OpenAI resource on the same plumbing that
  checks Azure's URL shape, `api-version` and `api-key`, and answers with bodies and
  stream chunks recorded from the real service. Its behaviour is chosen by the
  deployment named in the URL (see `FakeAzure`).

Everything binds 127.0.0.1 only; the gateway is stopped by its PID at teardown.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import openai
import pytest

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
ALL_SECRETS = (FULL_KEY, RESTRICTED_KEY, PROVIDER_KEY, AZURE_KEY, AZURE_WRONG_KEY)

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
    "cost_usd",
    "error",
}


def new_request_id(prefix: str = "e2e") -> str:
    """A valid client `x-request-id` ([A-Za-z0-9._:-], at most 128 characters)."""
    return f"{prefix}-{secrets.token_hex(8)}"


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
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        self._start_stream({"x-request-id": "req_upstream_stream"})
        base = {"id": "chatcmpl-fake-s", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": UP_CHAT_REPORTED,
                "system_fingerprint": "fp_e2e"}

        def event(choices: list, **extra: Any) -> None:
            self._send_event(json.dumps(dict(base, choices=choices, **extra)).encode())

        event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                "logprobs": None, "finish_reason": None}])
        for piece in UP_STREAM_PIECES:
            event([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                    "finish_reason": None}])
        event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        if include_usage:
            event([], usage=UP_USAGE)
        self._end_stream()

    def _embeddings(self, req: dict) -> None:
        data = embedding_data(req)
        self._send_json(200, {"object": "list", "data": data, "model": UP_EMBED,
                              "usage": {"prompt_tokens": 5, "total_tokens": 5}})


class FakeOpenAIServer(RecordingServer):
    def __init__(self) -> None:
        super().__init__(FakeOpenAIHandler)

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
# The gateway process
# --------------------------------------------------------------------------------------

def gateway_binary() -> Path:
    path = Path(os.environ.get("SWITCHYARD_BIN", "target/debug/switchyard"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


class Gateway:
    """A running `switchyard -c CONFIG` with its stdout (access log) captured."""

    def __init__(self, binary: Path, config: dict, workdir: Path) -> None:
        self.binary = binary
        self.config = config
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self._stdout: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.stderr_path = workdir / "stderr.log"

    @property
    def base_url(self) -> str:
        return f"http://{self.config['listen']}/v1"

    @property
    def origin(self) -> str:
        return f"http://{self.config['listen']}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.config['admin_listen']}"

    def start(self) -> None:
        config_path = self.workdir / "switchyard.yaml"
        # JSON is YAML: no YAML library needed, and no quoting surprises.
        config_path.write_text(json.dumps(self.config, indent=2))
        self._stderr_file = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(
            [str(self.binary), "-c", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            cwd=str(self.workdir),
            env=env,
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
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
        "routing": {"timeouts": {"connect": "1s", "first_byte": "5s", "idle": "5s", "total": "10s"}},
        "pingora": {
            "threads": 2,
            "pid_file": str(workdir / "switchyard.pid"),
            "upgrade_sock": str(workdir / "upgrade.sock"),
            "grace_period_seconds": 0,
            "graceful_shutdown_timeout_seconds": 1,
        },
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

    def start(config: dict, workdir: Path | None = None) -> Gateway:
        workdir = workdir or tmp_path_factory.mktemp("gateway")
        gw = Gateway(binary, config, workdir)
        started.append(gw)
        gw.start()
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture(scope="session")
def gateway(start_gateway, fake_upstream: FakeOpenAIServer, fake_azure: FakeAzureServer,
            tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    # Free ports are picked before the process binds them; retry on the rare race.
    last_error: Exception | None = None
    for _ in range(3):
        workdir = tmp_path_factory.mktemp("gateway")
        try:
            config = gateway_config(fake_upstream.base_url, fake_azure.origin, workdir)
            return start_gateway(config, workdir)
        except RuntimeError as e:
            last_error = e
    raise RuntimeError(f"could not start the gateway: {last_error}")


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


def assert_no_secret(text: str, *extra: str) -> None:
    for secret in ALL_SECRETS + extra:
        assert secret not in text, f"a secret ({secret[:12]}...) appears in: {text[:500]}"

