"""The process's life (issue 8): systemd notify, graceful drain, binary upgrade.

Each test runs a gateway of its own, in front of the fake OpenAI upstream's slow
streams (`slow_model`: N events MS apart) and the built-in mock. systemd is
imitated by a unix datagram socket the gateway finds in `NOTIFY_SOCKET`.

The contract (/work/ops-spec.md):
- notify: `READY=1` (with `STATUS=` and `MAINPID=`) once the API port accepts and
  SIGHUP is handled; `RELOADING=1` + `MONOTONIC_USEC=` then `READY=1` around every
  reload (a rejected one too); `STOPPING=1` first on SIGTERM.
- SIGTERM: the API listener stops accepting at once; a request on an open
  keep-alive connection gets 503 `shutting_down` (its request id in the message)
  with `connection: close`; `/readyz` says 503 `draining`, `/healthz` stays 200;
  in-flight requests and streams finish and the process exits 0 well under 1 s
  after the last one, every access-log line written. `shutdown_timeout` bounds the
  wait: streams still running get one SSE error event `shutting_down` (no
  `[DONE]`), waiting non-stream requests a 503. SIGINT exits at once.
- upgrade: `switchyard -u` waits on `pingora.upgrade_sock`; SIGQUIT to the old
  process hands the sockets over, the old drains (answering its open connections
  with `connection: close`) and exits 0; no client request fails. SIGUSR2 makes
  the gateway start that successor itself, which announces `MAINPID=<its pid>`,
  then `READY=1`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import (
    ROUTING,
    PROVIDER_KEY,
    Gateway,
    free_port,
    gateway_binary,
    make_client,
    new_request_id,
    pingora_settings,
    slow_model,
    slow_pieces,
    start_on_free_ports,
)

APP_KEY = "sk-sy-e2e-lifecycle-" + secrets.token_hex(12)
M_MOCK = "lc-mock"
M_STREAM_5S = "lc-slow-5s"  # 10 events, 500 ms apart
M_STREAM_3S = "lc-slow-3s"  # 6 events, 500 ms apart
EVENTS_5S, EVENTS_3S, GAP_MS = 10, 6, 500
QUESTION = "Which city is the capital of Denmark?"
CHAT = [{"role": "user", "content": QUESTION}]

EXIT_AFTER_LAST_S = 1.0     # exit after the last in-flight request ended
SHUTDOWN_TIMEOUT_S = 1.0    # `shutdown_timeout` of the cut-off test
CUTOFF_EXIT_S = 1.5         # exit after SIGTERM when shutdown_timeout cuts streams
NOTIFY_WAIT_S = 5.0
RELOAD_LIVE_S = 2.0
POLL_S = 0.01


# --------------------------------------------------------------------------------------
# The gateway
# --------------------------------------------------------------------------------------

def lifecycle_config(upstream_base_url: str, workdir: Path, **top: Any) -> dict:
    """One key; the mock and the fake upstream's slow streams; `top` adds top-level
    settings (`shutdown_timeout`)."""
    def one(provider: str, model: str) -> dict:
        return {"targets": [{"provider": provider, "model": model}]}

    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "keys": [{"name": "lc-app", "key": APP_KEY}],
        "providers": {
            "demo": {"type": "mock"},
            "up": {"type": "openai", "base_url": upstream_base_url, "api_key": PROVIDER_KEY},
        },
        "models": {
            M_MOCK: one("demo", "mock-chat-1"),
            M_STREAM_5S: one("up", slow_model(EVENTS_5S, GAP_MS)),
            M_STREAM_3S: one("up", slow_model(EVENTS_3S, GAP_MS)),
        },
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
        **top,
    }


def start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream,
                            env: dict[str, str] | None = None, **top: Any) -> Gateway:
    return start_on_free_ports(start_gateway, tmp_path_factory, lambda workdir: (
        lifecycle_config(fake_upstream.base_url, workdir, **top)), env=env or {})


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def wait_exit_timed(gw: Gateway, timeout: float) -> tuple[int | None, float]:
    """(exit status or None, monotonic time the exit was seen), polling finely."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = gw.proc.poll()
        if status is not None:
            return status, time.monotonic()
        time.sleep(POLL_S)
    return None, time.monotonic()


def admin_get(gw: Gateway, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(gw.admin_url + path, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def is_our_gateway(pid: int, config_path: Path | None = None) -> bool:
    """Whether `pid` runs the gateway binary (with `config_path` on its command
    line): the only processes a test may signal that it did not start itself."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if Path(exe).resolve() != gateway_binary().resolve():
        return False
    return config_path is None or str(config_path).encode() in cmdline


def kill_successors(config_path: Path, known: int | None) -> None:
    """SIGKILLs the successor a test's gateway started for itself (by its pid from
    MAINPID=, else the one gateway process running `-u` on this test's own config
    file): it is nobody's child of ours, so nothing else stops it."""
    pids = [known] if known else []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != known:
            with contextlib.suppress(OSError):
                args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if b"-u" in args and str(config_path).encode() in args:
                    pids.append(int(entry))
    for pid in pids:
        if is_our_gateway(pid, config_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------
# A fake systemd: the NOTIFY_SOCKET
# --------------------------------------------------------------------------------------

@dataclass
class Notice:
    """One datagram: its `KEY=VALUE` lines, when it arrived (monotonic, and
    CLOCK_MONOTONIC in µs for MONOTONIC_USEC)."""

    text: str
    at: float
    at_usec: int
    fields: dict[str, str] = field(default_factory=dict)


class NotifySocket:
    """A unix datagram socket in a short tmp path (sun_path is 108 bytes) that keeps
    every datagram; `on_notice` runs on the receiving thread as each arrives."""

    def __init__(self, on_notice: Callable[[Notice], None] | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="sy-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.on_notice = on_notice
        self.notices: list[Notice] = []
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode("utf-8", "replace")
            notice = Notice(text, time.monotonic(),
                            time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
            for line in text.split("\n"):
                if "=" in line:
                    key, value = line.split("=", 1)
                    notice.fields[key] = value
            if self.on_notice:
                self.on_notice(notice)
            with self._cond:
                self.notices.append(notice)
                self._cond.notify_all()

    def count(self) -> int:
        with self._cond:
            return len(self.notices)

    def wait_for(self, what: str, ok: Callable[[Notice], bool], start: int = 0,
                 timeout: float = NOTIFY_WAIT_S) -> int:
        """The index of the first notice from `start` on for which `ok` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.notices)):
                    if ok(self.notices[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} notice within {timeout}s; got "
                                         f"{[n.text for n in self.notices[start:]]}")
                self._cond.wait(left)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def ready(n: Notice) -> bool:
    return n.fields.get("READY") == "1"


def reloading(n: Notice) -> bool:
    return n.fields.get("RELOADING") == "1"


def check_reload_notices(notify: NotifySocket, start: int) -> None:
    """From `start` on: RELOADING=1 with a current MONOTONIC_USEC, then READY=1."""
    r = notify.wait_for("RELOADING=1", reloading, start)
    notice = notify.notices[r]
    assert "MONOTONIC_USEC" in notice.fields, notice.text
    usec = int(notice.fields["MONOTONIC_USEC"])
    # CLOCK_MONOTONIC when the reload began: before the datagram arrived, and recent.
    assert 0 <= notice.at_usec - usec < 5_000_000, (notice.at_usec, usec)
    notify.wait_for("READY=1 after RELOADING=1", ready, r + 1)


# --------------------------------------------------------------------------------------
# Raw HTTP: SSE streams and keep-alive connections
# --------------------------------------------------------------------------------------

def chat_body(model: str, stream: bool) -> bytes:
    return json.dumps({"model": model, "messages": CHAT, "stream": stream}).encode()


def api_headers(request_id: str) -> dict[str, str]:
    return {"authorization": f"Bearer {APP_KEY}", "content-type": "application/json",
            "x-request-id": request_id}


class RawRequest:
    """A chat completion sent with http.client on a thread of its own; a stream's
    `data:` events are kept with their arrival times."""

    def __init__(self, gw: Gateway, model: str, stream: bool = True) -> None:
        self.request_id = new_request_id("lc")
        self.host, self.port = host_port(gw.config["listen"])
        self.model, self.stream = model, stream
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.events: list[tuple[float, str]] = []
        self.body = b""
        self.error: str | None = None
        self.ended_at: float | None = None
        self.content = threading.Event()  # the first content event arrived
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            conn.request("POST", "/v1/chat/completions", body=chat_body(self.model, self.stream),
                         headers=api_headers(self.request_id))
            response = conn.getresponse()
            self.status = response.status
            self.headers = {k.lower(): v for k, v in response.getheaders()}
            if not self.stream or response.status != 200:
                self.body = response.read()
                return
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data: "):
                    data = line[len("data: "):]
                    self.events.append((time.monotonic(), data))
                    if '"content":"piece' in data.replace(" ", ""):
                        self.content.set()
        except Exception as e:  # noqa: BLE001 — reported by the test
            self.error = repr(e)
        finally:
            self.ended_at = time.monotonic()
            conn.close()
            self.content.set()
            self.ended.set()

    def pieces(self) -> list[str]:
        out = []
        for _, data in self.events:
            with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                piece = json.loads(data)["choices"][0]["delta"].get("content")
                if piece:
                    out.append(piece)
        return out

    def finish_reasons(self) -> list[str]:
        out = []
        for _, data in self.events:
            with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                reason = json.loads(data)["choices"][0]["finish_reason"]
                if reason:
                    out.append(reason)
        return out

    def error_events(self) -> list[dict]:
        out = []
        for _, data in self.events:
            with contextlib.suppress(ValueError):
                doc = json.loads(data)
                if isinstance(doc, dict) and "error" in doc:
                    out.append(doc["error"])
        return out

    def whole(self, events: int) -> bool:
        """Every piece, the finish chunk, and [DONE] last."""
        return (self.error is None and self.status == 200
                and self.pieces() == slow_pieces(events)
                and self.finish_reasons() == ["stop"]
                and bool(self.events) and self.events[-1][1] == "[DONE]")

    def __repr__(self) -> str:
        return (f"RawRequest({self.request_id}: status={self.status} error={self.error} "
                f"events={[d[:80] for _, d in self.events]} body={self.body[:300]!r})")


class KeepAlive:
    """One keep-alive connection to the API port, used once when opened."""

    def __init__(self, gw: Gateway) -> None:
        host, port = host_port(gw.config["listen"])
        self.conn = http.client.HTTPConnection(host, port, timeout=10)
        status, headers, _ = self.send("GET", "/v1/models", None, new_request_id("lc-ka"))
        assert status == 200 and headers.get("connection", "").lower() != "close", headers

    def send(self, method: str, path: str, body: bytes | None,
             request_id: str) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, body=body, headers=api_headers(request_id))
        response = self.conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        self.conn.close()


def new_connection_outcome(address: str) -> str:
    """What a brand-new TCP connection to `address` gets: "refused", "reset",
    "closed" (accepted, then closed unanswered), "hung", or the answer's status line."""
    try:
        sock = socket.create_connection(host_port(address), timeout=1)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    with sock:
        try:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\n"
                         b"authorization: Bearer " + APP_KEY.encode() + b"\r\n\r\n")
            data = sock.recv(200)
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except socket.timeout:
            return "hung"
    return "closed" if not data else data.split(b"\r\n", 1)[0].decode("latin-1")


class RequestLoop:
    """Chat completions on the mock, one after another, each on a new connection
    (urllib), until stopped; anything but a 200 is a failure."""

    def __init__(self, origin: str) -> None:
        self.url = origin + "/v1/chat/completions"
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.answered: list[tuple[float, str]] = []  # (when, request id) of each 200
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RequestLoop":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self.stop.is_set():
            request_id = new_request_id("lc-loop")
            request = urllib.request.Request(self.url, data=chat_body(M_MOCK, False),
                                             headers=api_headers(request_id))
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    r.read()
                    self.answered.append((time.monotonic(), request_id))
            except urllib.error.HTTPError as e:
                self.failures.append(f"{request_id}: {e.code} {e.read()[:300]!r}")
            except Exception as e:  # noqa: BLE001 — refused, reset, timed out
                self.failures.append(f"{request_id}: {e!r}")
            time.sleep(0.005)

    def answered_after(self, moment: float) -> list[str]:
        return [rid for at, rid in self.answered if at > moment]


# --------------------------------------------------------------------------------------
# 1. systemd notify
# --------------------------------------------------------------------------------------

def test_ready_is_sent_once_the_api_port_accepts_and_sighup_is_handled(
        start_gateway, fake_upstream, tmp_path_factory):
    """On READY=1 a connection to the API port is made at once, and succeeds, and a
    SIGHUP sent at once reloads (the handler is installed). Nothing but MAINPID= came
    before READY=1, which carries MAINPID=<the gateway's pid> and STATUS=."""
    listen: dict[str, str] = {}
    on_ready: dict[str, Any] = {}

    def react(notice: Notice) -> None:
        if not ready(notice) or on_ready:
            return
        try:
            socket.create_connection(host_port(listen["address"]), timeout=1).close()
            on_ready["connect"] = "accepted"
        except OSError as e:
            on_ready["connect"] = repr(e)
        pid = int(notice.fields.get("MAINPID", "0"))
        # Only our own child, by its pid (it cannot be anything else in this test).
        if pid and is_our_gateway(pid) and Path(f"/proc/{pid}/stat").read_text().split()[3] \
                == str(os.getpid()):
            os.kill(pid, signal.SIGHUP)
            on_ready["sighup"] = pid

    sock = NotifySocket(react)
    try:
        def make_config(workdir: Path) -> dict:
            config = lifecycle_config(fake_upstream.base_url, workdir)
            listen["address"] = config["listen"]
            return config

        gw = start_on_free_ports(start_gateway, tmp_path_factory, make_config,
                                 env={"NOTIFY_SOCKET": sock.path})
        r = sock.wait_for("READY=1", ready)
        assert on_ready.get("connect") == "accepted", on_ready
        for notice in sock.notices[:r]:
            assert set(notice.fields) <= {"MAINPID"}, f"before READY=1: {notice.text!r}"
        notice = sock.notices[r]
        assert notice.fields.get("MAINPID") == str(gw.pid), notice.text
        assert "STATUS" in notice.fields, notice.text

        assert on_ready.get("sighup") == gw.pid, on_ready
        check_reload_notices(sock, r + 1)
        deadline = time.monotonic() + RELOAD_LIVE_S
        while gw.metric("switchyard_config_generation") != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gw.proc.poll() is None, "SIGHUP right after READY=1 killed the gateway"
        assert gw.metric("switchyard_config_generation") == 2
        assert gw.metric("switchyard_config_reloads_total", result="success") == 1
    finally:
        sock.close()


def test_reloading_then_ready_around_every_reload(start_gateway, fake_upstream,
                                                  tmp_path_factory, notify):
    """A SIGHUP, a file edit and a rejected edit: each gets RELOADING=1 (with a
    current MONOTONIC_USEC), then READY=1."""
    gw = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream,
                                 env={"NOTIFY_SOCKET": notify.path})
    notify.wait_for("READY=1", ready)

    start = notify.count()
    gw.send_signal(signal.SIGHUP)
    check_reload_notices(notify, start)

    start = notify.count()
    edited = dict(gw.config, models=dict(gw.config["models"], **{
        "lc-new": {"targets": [{"provider": "demo", "model": "mock-chat-1"}]}}))
    gw.write_config(edited)
    check_reload_notices(notify, start)

    start = notify.count()
    gw.write_config(json.dumps(edited, indent=2).replace('"keys"', '"keyz"', 1))
    check_reload_notices(notify, start)
    gw.wait_stderr("config reload rejected", timeout=RELOAD_LIVE_S)

    assert gw.metric("switchyard_config_generation") == 3
    assert gw.metric("switchyard_config_reloads_total", result="error") == 1


def test_a_setting_that_needs_a_restart_shows_in_the_status_until_reverted(
        start_gateway, fake_upstream, tmp_path_factory, notify):
    """A reload that changes `listen` keeps serving on the old port, and the READY=1
    that follows says, in STATUS (what `systemctl status` shows), which setting
    waits for a restart; reverting the edit clears it."""
    gw = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream,
                                 env={"NOTIFY_SOCKET": notify.path})
    first = notify.wait_for("READY=1", ready)
    assert "restart" not in notify.notices[first].fields["STATUS"]

    start = notify.count()
    gw.write_config(dict(gw.config, listen=f"127.0.0.1:{free_port()}"))
    r = notify.wait_for("RELOADING=1", reloading, start)
    status = notify.notices[notify.wait_for("READY=1", ready, r + 1)].fields["STATUS"]
    assert status.endswith("config generation 2; restart to apply: listen"), status
    assert f"serving on {gw.config['listen']}" in status, status

    start = notify.count()
    gw.write_config(gw.config)
    r = notify.wait_for("RELOADING=1", reloading, start)
    status = notify.notices[notify.wait_for("READY=1", ready, r + 1)].fields["STATUS"]
    assert status.endswith("config generation 3"), status


def test_the_open_file_soft_limit_is_raised_to_the_hard_limit(fake_upstream, tmp_path):
    """Started with a soft limit of 256 descriptors (a few hundred streams) under a
    hard limit of 4096, the gateway raises its soft limit to 4096 itself, as it
    does to whatever `LimitNOFILE=` grants under systemd."""
    config = lifecycle_config(fake_upstream.base_url, tmp_path)
    path = tmp_path / "switchyard.yaml"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [str(gateway_binary()), "-c", str(path)], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096)))
    try:
        host, port = host_port(config["admin_listen"])
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((host, port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(POLL_S)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert row.split()[3:5] == ["4096", "4096"], row
    finally:
        proc.send_signal(signal.SIGTERM)  # by PID: only the process we started
        assert proc.wait(timeout=5) == 0


def test_stopping_is_the_first_notice_after_sigterm(start_gateway, fake_upstream,
                                                    tmp_path_factory, notify):
    gw = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream,
                                 env={"NOTIFY_SOCKET": notify.path})
    notify.wait_for("READY=1", ready)
    start = notify.count()
    gw.send_signal(signal.SIGTERM)
    first = notify.wait_for("any", lambda n: True, start)
    assert notify.notices[first].fields.get("STOPPING") == "1", notify.notices[first].text
    assert gw.wait_exit(EXIT_AFTER_LAST_S + 1) == 0


# --------------------------------------------------------------------------------------
# 2. SIGTERM: drain
# --------------------------------------------------------------------------------------

def test_sigterm_lets_a_stream_finish_refuses_new_work_and_exits_right_after(
        start_gateway, fake_upstream, tmp_path_factory):
    """SIGTERM while a 5 s stream runs: the stream ends whole ([DONE]); meanwhile
    /readyz is 503 `draining` (/healthz and /metrics still 200), a request on an
    already open keep-alive connection gets 503 `shutting_down` naming its request
    id, with `connection: close`, and a new connection is refused. The process exits
    0 within 1 s of the stream's end, with the stream's access-log line written."""
    gw = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream,
                                 shutdown_timeout="10s")
    keep_alive = KeepAlive(gw)
    stream = RawRequest(gw, M_STREAM_5S)
    try:
        assert stream.content.wait(5) and stream.error is None, stream
        gw.send_signal(signal.SIGTERM)

        deadline = time.monotonic() + 1
        while (status := admin_get(gw, "/readyz"))[0] != 503 and time.monotonic() < deadline:
            time.sleep(POLL_S)
        assert status[0] == 503, status
        assert json.loads(status[1])["status"] == "draining", status
        assert admin_get(gw, "/healthz")[0] == 200
        metrics = admin_get(gw, "/metrics")
        assert metrics[0] == 200 and b"switchyard_requests_total" in metrics[1]

        refused_id = new_request_id("lc-refused")
        status, headers, body = keep_alive.send(
            "POST", "/v1/chat/completions", chat_body(M_MOCK, False), refused_id)
        assert status == 503, (status, body)
        assert headers.get("connection", "").lower() == "close", headers
        assert headers.get("x-request-id") == refused_id, headers
        error = json.loads(body)["error"]
        assert (error["type"], error["param"], error["code"]) == (
            "server_error", None, "shutting_down"), error
        assert error["message"].endswith(f"(request id: {refused_id})"), error

        assert new_connection_outcome(gw.config["listen"]) in ("refused", "reset", "closed")
        assert not stream.ended.is_set(), f"the stream ended early: {stream}"

        assert stream.ended.wait(10), "the stream never ended"
        status, exited_at = wait_exit_timed(gw, EXIT_AFTER_LAST_S + 5)
    finally:
        keep_alive.close()
    assert stream.whole(EVENTS_5S), stream
    assert status == 0, f"exit status {status}"
    assert exited_at - stream.ended_at < EXIT_AFTER_LAST_S, (
        f"exited {exited_at - stream.ended_at:.2f}s after the stream's end")
    gw.stop()
    line = gw.log_for(stream.request_id, timeout=0)
    assert (line["status"], line["stream"]) == (200, True), line
    assert gw.log_for(refused_id, timeout=0)["status"] == 503


def test_shutdown_timeout_ends_streams_with_an_error_event_and_waiting_requests_with_503(
        start_gateway, fake_upstream, tmp_path_factory):
    """`shutdown_timeout: 1s`, SIGTERM while a 5 s stream runs and a non-stream
    request waits on a 5 s upstream: a second later the stream gets one error event
    `shutting_down` and ends without [DONE], the waiting request a 503
    `shutting_down`; the process exits 0 within 1.5 s of the SIGTERM, both
    access-log lines written."""
    gw = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream,
                                 shutdown_timeout=f"{int(SHUTDOWN_TIMEOUT_S * 1000)}ms")
    stream = RawRequest(gw, M_STREAM_5S)
    waiting = RawRequest(gw, M_STREAM_5S, stream=False)
    assert stream.content.wait(5) and stream.error is None, stream
    deadline = time.monotonic() + 5
    while not fake_upstream.by_request_id(waiting.request_id) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert fake_upstream.by_request_id(waiting.request_id), "the waiting request never left"

    signalled = time.monotonic()
    gw.send_signal(signal.SIGTERM)
    status, exited_at = wait_exit_timed(gw, CUTOFF_EXIT_S + 5)
    assert stream.ended.wait(5) and waiting.ended.wait(5)

    assert status == 0, f"exit status {status}"
    assert exited_at - signalled < CUTOFF_EXIT_S, f"exited {exited_at - signalled:.2f}s after"
    errors = stream.error_events()
    assert [e.get("code") for e in errors] == ["shutting_down"], stream
    assert stream.events[-1][1] != "[DONE]" and "[DONE]" not in [d for _, d in stream.events]
    error_at = next(at for at, data in stream.events if '"error"' in data)
    assert error_at - signalled >= SHUTDOWN_TIMEOUT_S - 0.1, "cut before shutdown_timeout"
    assert 0 < len(stream.pieces()) < EVENTS_5S, stream
    assert waiting.status == 503, waiting
    assert json.loads(waiting.body)["error"]["code"] == "shutting_down", waiting
    gw.stop()
    assert gw.log_for(stream.request_id, timeout=0)["stream"] is True
    assert gw.log_for(waiting.request_id, timeout=0)["status"] == 503


@pytest.mark.parametrize("connections", ["none", "an idle keep-alive connection"])
def test_an_idle_gateway_exits_at_once_on_sigterm(connections, start_gateway, fake_upstream,
                                                  tmp_path_factory):
    """No request in flight (a client's idle keep-alive connection is not one):
    SIGTERM exits 0 within 1 s."""
    gw = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream)
    with make_client(gw, APP_KEY) as client:
        client.chat.completions.create(model=M_MOCK, messages=CHAT)
    keep_alive = KeepAlive(gw) if connections != "none" else None
    try:
        signalled = time.monotonic()
        gw.send_signal(signal.SIGTERM)
        status, exited_at = wait_exit_timed(gw, EXIT_AFTER_LAST_S + 5)
    finally:
        if keep_alive:
            keep_alive.close()
    assert status == 0, f"exit status {status}"
    assert exited_at - signalled < EXIT_AFTER_LAST_S, f"exited {exited_at - signalled:.2f}s after"


def test_sigint_exits_at_once_without_draining(start_gateway, fake_upstream, tmp_path_factory):
    gw = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream)
    stream = RawRequest(gw, M_STREAM_5S)
    assert stream.content.wait(5) and stream.error is None, stream
    signalled = time.monotonic()
    gw.send_signal(signal.SIGINT)
    status, exited_at = wait_exit_timed(gw, 5)
    assert status is not None and exited_at - signalled < EXIT_AFTER_LAST_S
    assert stream.ended.wait(5) and not stream.whole(EVENTS_5S)


# --------------------------------------------------------------------------------------
# 3. Binary upgrade
# --------------------------------------------------------------------------------------

def start_successor(start_gateway, tmp_path_factory, old: Gateway) -> Gateway:
    """`switchyard -u` on the old's config (the same addresses and upgrade_sock),
    its output captured like the old's; it waits for the sockets."""
    return start_gateway(old.config, tmp_path_factory.mktemp("successor"), args=("-u",),
                         wait_ready=False)


def hand_over(old: Gateway, new: Gateway) -> None:
    """Waits (bounded) until the successor waits on upgrade_sock, then SIGQUITs the old."""
    upgrade_sock = Path(old.config["pingora"]["upgrade_sock"])
    deadline = time.monotonic() + 10
    while not upgrade_sock.exists() and time.monotonic() < deadline:
        assert new.proc.poll() is None, "the successor exited:\n" + new.stderr_text()
        time.sleep(POLL_S)
    assert upgrade_sock.exists(), "the successor never waited on upgrade_sock"
    old.send_signal(signal.SIGQUIT)


def wait_serving(new: Gateway) -> None:
    """Waits (bounded) until the successor has answered a request (its access log)."""
    deadline = time.monotonic() + 5
    while not new.access_log() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert new.access_log(), "the successor never served:\n" + new.stderr_text()[-3000:]


def test_upgrade_with_u_and_sigquit_fails_no_request(start_gateway, fake_upstream,
                                                     tmp_path_factory):
    """`switchyard -u` on the same config waits on upgrade_sock; SIGQUIT to the old:
    a loop of requests on new connections never fails, nor does an SDK client whose
    pooled connection was to the old (max_retries=0: before, during and after the
    old's drain); the old's 3 s stream ends whole, the old exits 0, and the new
    process serves from then on (its access log has the requests made after the old
    exited; /readyz 200); SIGTERM then stops it with status 0."""
    old = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream)
    new = start_successor(start_gateway, tmp_path_factory, old)
    try:
        with RequestLoop(old.origin) as loop, make_client(old, APP_KEY) as pooled:
            pooled.chat.completions.create(model=M_MOCK, messages=CHAT)
            stream = RawRequest(old, M_STREAM_3S)
            assert stream.content.wait(5) and stream.error is None, stream
            hand_over(old, new)
            wait_serving(new)
            assert not stream.ended.is_set(), f"the old's stream ended early: {stream}"
            pooled.chat.completions.create(model=M_MOCK, messages=CHAT)
            assert stream.ended.wait(10), "the old's stream never ended"
            status, old_exited = wait_exit_timed(old, 10)
            assert status == 0, f"the old exited with {status}:\n" + old.stderr_text()[-3000:]
            time.sleep(0.3)  # the loop keeps going against the new process alone
            assert new.proc.poll() is None, "the successor died:\n" + new.stderr_text()[-3000:]
            ready_status, ready_body = new.readyz()
            assert ready_status == 200, ready_body
            pooled.chat.completions.create(model=M_MOCK, messages=CHAT)
        assert stream.whole(EVENTS_3S), stream
        assert loop.failures == [], loop.failures[:5]
        served_by_new = loop.answered_after(old_exited)
        assert served_by_new, "no request answered after the old exited"
        assert new.log_for(served_by_new[-1])["status"] == 200
        assert old.log_for(stream.request_id, timeout=0)["status"] == 200
    finally:
        new.stop()
    assert new.proc.returncode == 0


def test_after_the_hand_over_the_old_answers_its_open_connections_then_closes_them(
        start_gateway, fake_upstream, tmp_path_factory):
    """A client's keep-alive connection to the old, idle at the hand-over: once the
    new process serves (while the old still drains a stream), a request on it is
    answered normally (200) with `connection: close` — the spec's "requests arriving
    on its open connections are still answered normally, with connection: close".
    (http.client, unlike pooling clients such as the SDK's httpx, does not notice a
    connection the server closed while it was idle: closing idle connections at the
    hand-over instead of answering them fails this test, and only this one.)"""
    old = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream)
    new = start_successor(start_gateway, tmp_path_factory, old)
    keep_alive = KeepAlive(old)
    try:
        with RequestLoop(old.origin):
            stream = RawRequest(old, M_STREAM_3S)
            assert stream.content.wait(5) and stream.error is None, stream
            hand_over(old, new)
            wait_serving(new)
            assert not stream.ended.is_set(), f"the old's stream ended early: {stream}"
            try:
                status, headers, body = keep_alive.send(
                    "POST", "/v1/chat/completions", chat_body(M_MOCK, False),
                    new_request_id("lc-ka"))
            except OSError as e:
                raise AssertionError("a request on the old's open keep-alive connection "
                                     f"after the hand-over: {e!r}") from e
        assert status == 200, (status, body)
        assert headers.get("connection", "").lower() == "close", headers
    finally:
        keep_alive.close()
        new.stop()


def test_upgrade_by_sigusr2_announces_the_successor_and_fails_no_request(
        start_gateway, fake_upstream, tmp_path_factory, notify):
    """SIGUSR2 under a fake systemd: MAINPID=<a new pid, a gateway child of the old>
    then READY=1; the old exits 0; requests on new connections never fail, nor does
    an SDK client whose pooled connection was to the old; the successor serves
    /readyz. The successor is SIGKILLed by its pid at the end."""
    gw = start_lifecycle_gateway(start_gateway, tmp_path_factory, fake_upstream,
                                 env={"NOTIFY_SOCKET": notify.path})
    notify.wait_for("READY=1", ready)
    successor: int | None = None
    try:
        with RequestLoop(gw.origin) as loop, make_client(gw, APP_KEY) as pooled:
            pooled.chat.completions.create(model=M_MOCK, messages=CHAT)
            start = notify.count()
            gw.send_signal(signal.SIGUSR2)
            m = notify.wait_for("MAINPID=<successor>", lambda n: n.fields.get(
                "MAINPID", str(gw.pid)) != str(gw.pid), start, timeout=10)
            successor = int(notify.notices[m].fields["MAINPID"])
            assert is_our_gateway(successor, gw.config_path), successor
            r = notify.wait_for("READY=1 from the successor", ready, m + 1, timeout=10)
            assert notify.notices[r].fields.get("MAINPID", str(successor)) == str(successor)
            status, old_exited = wait_exit_timed(gw, 10)
            assert status == 0, f"the old exited with {status}:\n" + gw.stderr_text()[-3000:]
            time.sleep(0.3)
            assert is_our_gateway(successor, gw.config_path), "the successor is gone"
            assert gw.readyz()[0] == 200
            pooled.chat.completions.create(model=M_MOCK, messages=CHAT)
        assert loop.failures == [], loop.failures[:5]
        assert loop.answered_after(old_exited), "no request answered after the old exited"
    finally:
        kill_successors(gw.config_path, successor)
        gw.stop()
