"""End-to-end fixtures: the real gateway binary, a fake OpenAI upstream, SDK clients.

The gateway runs as `switchyard -c CONFIG.yaml` on free 127.0.0.1 ports with a
config written for the session. Two kinds of provider sit behind it:

* `demo` (`type: mock`): the gateway's built-in mock, no upstream at all;
* `fake-openai` (`type: openai`): a small OpenAI-compatible HTTP/1.1 server written
  here (threads, keep-alive, TCP_NODELAY) that records every request it receives,
  so tests can check what reached the upstream. Its behaviour is chosen by the
  upstream model name the gateway writes into the body (see `FakeOpenAI`).

Everything binds 127.0.0.1 only; the gateway is stopped by its PID at teardown.
"""

from __future__ import annotations

import base64
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
import urllib.request
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
ALL_SECRETS = (FULL_KEY, RESTRICTED_KEY, PROVIDER_KEY)

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
        self.path = path
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


class FakeOpenAIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway pools its connections
    disable_nagle_algorithm = True  # TCP_NODELAY: stream events leave at once
    timeout = 30  # an idle keep-alive connection is closed after this
    server: "FakeOpenAIServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep pytest output clean

    # -- plumbing --------------------------------------------------------------------

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
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        # Headers a real provider sends that must not reach the app.
        self.send_header("x-request-id", "req_upstream_" + secrets.token_hex(4))
        self.send_header("openai-processing-ms", "3")
        self.send_header("openai-organization", "org-e2e-secret")
        self.send_header("set-cookie", "__cf_bm=e2e; path=/")
        self.send_header("x-ratelimit-remaining-requests", "4999")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- routes ----------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        self.server.record(RecordedRequest("GET", self.path, list(self.headers.items()), b""))
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": []})
        else:
            self._send_json(404, {"error": {"message": "no such path", "type": "invalid_request_error",
                                            "param": None, "code": None}})

    def do_POST(self) -> None:  # noqa: N802
        body = self._read_body()
        rec = RecordedRequest("POST", self.path, list(self.headers.items()), body)
        self.server.record(rec)
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
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-request-id", "req_upstream_stream")
        self.end_headers()
        self.wfile.flush()
        base = {"id": "chatcmpl-fake-s", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": UP_CHAT_REPORTED,
                "system_fingerprint": "fp_e2e"}

        def event(choices: list, **extra: Any) -> None:
            payload = dict(base, choices=choices, **extra)
            self._send_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")
            time.sleep(0.005)  # separate TCP segments, as a real model would produce

        event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                "logprobs": None, "finish_reason": None}])
        for piece in UP_STREAM_PIECES:
            event([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                    "finish_reason": None}])
        event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        if include_usage:
            event([], usage=UP_USAGE)
        self._send_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _embeddings(self, req: dict) -> None:
        inputs = req.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        dims = int(req.get("dimensions") or 8)
        data = []
        for i, text in enumerate(inputs):
            vec = fake_vector(str(text), dims)
            if req.get("encoding_format") == "base64":
                emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        self._send_json(200, {"object": "list", "data": data, "model": UP_EMBED,
                              "usage": {"prompt_tokens": 5, "total_tokens": 5}})


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeOpenAIHandler)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    def record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def received(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    def by_request_id(self, request_id: str) -> list[RecordedRequest]:
        return [r for r in self.received() if r.header("x-request-id") == request_id]


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


def gateway_config(upstream_base_url: str, workdir: Path) -> dict:
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

@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
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
def gateway(start_gateway, fake_upstream: FakeOpenAIServer,
            tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    # Free ports are picked before the process binds them; retry on the rare race.
    last_error: Exception | None = None
    for _ in range(3):
        workdir = tmp_path_factory.mktemp("gateway")
        try:
            return start_gateway(gateway_config(fake_upstream.base_url, workdir), workdir)
        except RuntimeError as e:
            last_error = e
    raise RuntimeError(f"could not start the gateway: {last_error}")


def make_client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=10.0)


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


def assert_no_secret(text: str, *extra: str) -> None:
    for secret in ALL_SECRETS + extra:
        assert secret not in text, f"a secret ({secret[:12]}...) appears in: {text[:500]}"

