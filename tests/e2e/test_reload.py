"""Hot reload (issue 8), seen from outside the process.

Each test runs a gateway of its own on a config file of its own, changes that file
the ways operators do — rewritten in place (`open(path, 'w')`), replaced by a rename
(a tmp file `os.replace`d over it), or edited and followed by `SIGHUP` — and checks
what clients, `/metrics`, `/readyz` and stderr see.

The contract (/work/ops-spec.md, "Hot reload"): the file is polled every 250 ms and a
change that stayed stable for one more poll is applied once, live within ~1 s (the
tests allow 2 s); SIGHUP reloads at once, also with an unchanged file. A reload
re-reads the file and every `*_file` secret, validates it like `switchyard -t` and
swaps atomically; in-flight requests finish on the old snapshot. Success: a stderr
line with `config reloaded` and `generation N`, `switchyard_config_reloads_total
{result="success"}` +1, `switchyard_config_generation` +1 (1 at start) and the same
number in `/readyz`. Failure: a stderr line with `config reload rejected` followed
by the message `switchyard -t` prints for the same file, `{result="error"}` +1,
generation unchanged, the old config still serving. Fields that need a restart
(`listen`, `admin_listen`, `pingora:`) get a `needs a restart` warning naming them
while the rest applies. Health, circuit, cooldown (per target id) and rate-limit
buckets (per key name) of unchanged targets and keys survive a reload.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import openai
import pytest

from conftest import (
    PROVIDER_KEY,
    ROUTING,
    UP_CHAT,
    UP_SERVER_ERROR,
    FakeOpenAIServer,
    Gateway,
    collect,
    free_port,
    gateway_binary,
    make_client,
    new_request_id,
    pingora_settings,
    serving,
    slow_model,
    slow_pieces,
    start_on_free_ports,
)

# A change is live within ~1 s of the save; the spec tells tests to allow 2 s.
RELOAD_LIVE_S = 2.0
# Three polls of the watcher: long enough for a save to be applied a second time, if
# the gateway (wrongly) did that.
SETTLE_S = 0.75
POLL_S = 0.02
CHECK_TIMEOUT_S = 30  # `switchyard -t` runs in well under a second

APP_KEY = "sk-sy-e2e-reload-app-" + secrets.token_hex(12)
DOOMED_KEY = "sk-sy-e2e-reload-doomed-" + secrets.token_hex(12)
LIMITED_KEY = "sk-sy-e2e-reload-limited-" + secrets.token_hex(12)
LIMITED_RPM = 600  # one request back every 100 ms: always full again by the reload
LOWERED_RPM = 2    # after the reload: two requests, then 429 (one back every 30 s)
BUDGET_RPM = 5     # the carried-over budget: one request back every 12 s

# Models of the reload gateway.
M_MOCK = "rl-mock"  # the built-in mock
M_GPT = "rl-gpt"    # provider `up`: the fake OpenAI upstream (or A, then B)
M_NEW = "rl-new"    # added by reloads
UP = "up"
DEMO = "demo"

QUESTION = "Which city is the capital of Denmark?"
CHAT = [{"role": "user", "content": QUESTION}]

HOW = ("in-place", "rename", "sighup")


# --------------------------------------------------------------------------------------
# The gateway and its config
# --------------------------------------------------------------------------------------

def target(provider: str, model: str, **extra: Any) -> dict:
    return {"targets": [{"provider": provider, "model": model, **extra}]}


def reload_config(upstream_base_url: str, workdir: Path) -> dict:
    """Three keys (one with a generous limit, one to be removed), the mock and an
    OpenAI provider, a model on each."""
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "keys": [
            {"name": "rl-app", "key": APP_KEY},
            {"name": "rl-doomed", "key": DOOMED_KEY},
            {"name": "rl-limited", "key": LIMITED_KEY,
             "rate_limit": {"requests_per_minute": LIMITED_RPM}},
        ],
        "providers": {
            DEMO: {"type": "mock"},
            UP: {"type": "openai", "base_url": upstream_base_url, "api_key": PROVIDER_KEY},
        },
        "models": {
            M_MOCK: target(DEMO, "mock-chat-1"),
            M_GPT: target(UP, UP_CHAT, price={"input_per_mtok": 2.5, "output_per_mtok": 10.0}),
        },
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
    }


def start_reload_gateway(start_gateway, tmp_path_factory,
                         make_config: Callable[[Path], dict], **options: Any) -> Gateway:
    return start_on_free_ports(start_gateway, tmp_path_factory, make_config, **options)


def with_new_model(config: dict) -> dict:
    """`config` plus the mock under M_NEW: a harmless change."""
    changed = copy.deepcopy(config)
    changed["models"][M_NEW] = target(DEMO, "mock-chat-1")
    return changed


# --------------------------------------------------------------------------------------
# Reloads and what they count
# --------------------------------------------------------------------------------------

def generation(gw: Gateway) -> float | None:
    return gw.metric("switchyard_config_generation")


def reloads(gw: Gateway, result: str) -> float | None:
    return gw.metric("switchyard_config_reloads_total", result=result)


def wait_until(what: str, probe: Callable[[], Any], ok: Callable[[Any], bool],
               timeout: float) -> Any:
    """Calls `probe` until `ok(value)` (bounded by `timeout`); returns the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout}s")
        time.sleep(POLL_S)


def wait_generation(gw: Gateway, at_least: float, timeout: float = RELOAD_LIVE_S) -> float:
    """Waits until the generation reaches `at_least`; returns it."""
    return wait_until(f"switchyard_config_generation >= {at_least}", lambda: generation(gw),
                      lambda g: g is not None and g >= at_least, timeout)


def apply(gw: Gateway, config: dict | str, how: str) -> None:
    """Puts `config` in the gateway's file: in place, by a rename, or in place
    followed at once by SIGHUP."""
    gw.write_config(config, rename=how == "rename")
    if how == "sighup":
        gw.send_signal(signal.SIGHUP)


def assert_reloaded(gw: Gateway, gen: float) -> None:
    """The success line names the generation, and /readyz agrees with /metrics."""
    lines = gw.wait_stderr("config reloaded")
    assert any(f"generation {int(gen)}" in line for line in lines), lines
    status, body = gw.readyz()
    assert status == 200 and body["config_generation"] == gen, (status, body)


def check_with_t(config: Path) -> tuple[int, str]:
    """`switchyard -t -c CONFIG`: (exit status, stdout + stderr)."""
    done = subprocess.run([str(gateway_binary()), "-t", "-c", str(config)],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=CHECK_TIMEOUT_S)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------

@dataclass
class Reply:
    """What the client got: status, response headers, the error envelope's `error`."""

    request_id: str
    status: int
    headers: Any
    error: dict | None

    @property
    def code(self) -> str | None:
        return (self.error or {}).get("code")


def ask(client: openai.OpenAI, model: str, *, stream: bool = False,
        request_id: str | None = None) -> Reply:
    """One chat completion through the SDK (a stream read to its end and checked
    whole); an error answer is returned, not raised."""
    request_id = request_id or new_request_id("rl")
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=CHAT, stream=stream,
            extra_headers={"x-request-id": request_id})
        if stream:
            pieces, chunks = collect(raw.parse())
            finish = [c.choices[0].finish_reason for c in chunks
                      if c.choices and c.choices[0].finish_reason]
            assert pieces and finish == ["stop"], f"an incomplete stream: {pieces} {finish}"
        else:
            raw.parse()
        return Reply(request_id, raw.status_code, raw.headers, None)
    except openai.APIStatusError as e:
        try:
            error = e.response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"message": e.response.text}
        return Reply(request_id, e.status_code, e.response.headers, error)


def model_ids(client: openai.OpenAI) -> set[str]:
    return {m.id for m in client.models.list().data}


# --------------------------------------------------------------------------------------
# 1. What a reload changes, by each trigger
# --------------------------------------------------------------------------------------

@pytest.fixture
def two_upstreams() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    """Fake OpenAI upstreams A and B of this test alone."""
    with serving(FakeOpenAIServer()) as a, serving(FakeOpenAIServer()) as b:
        yield a, b


@pytest.mark.parametrize("how", HOW)
def test_a_reload_adds_a_model_removes_a_key_changes_a_limit_and_moves_a_provider(
        how, start_gateway, tmp_path_factory, two_upstreams):
    """One edit: a model added (listed and usable), a key removed (401 right after),
    a key's requests_per_minute lowered to 2 (two answers, then 429), and the
    provider's base_url moved from fake A to fake B (B gets every request from then
    on, A none). Live within 2 s of the save, by each trigger."""
    a, b = two_upstreams
    gw = start_reload_gateway(start_gateway, tmp_path_factory,
                              lambda workdir: reload_config(a.base_url, workdir))
    config = gw.config
    with (make_client(gw, APP_KEY) as app, make_client(gw, DOOMED_KEY) as doomed,
          make_client(gw, LIMITED_KEY) as limited):
        # Before: the old config, every part of it in use.
        assert M_NEW not in model_ids(app)
        assert ask(app, M_NEW).code == "model_not_found"
        assert ask(doomed, M_MOCK).status == 200
        listed = limited.models.with_raw_response.list()  # spends nothing
        assert listed.headers["x-ratelimit-limit-requests"] == str(LIMITED_RPM)
        first = ask(app, M_GPT)
        assert first.status == 200 and len(a.by_request_id(first.request_id)) == 1

        changed = with_new_model(config)
        changed["keys"] = [k for k in changed["keys"] if k["name"] != "rl-doomed"]
        for key in changed["keys"]:
            if key["name"] == "rl-limited":
                key["rate_limit"] = {"requests_per_minute": LOWERED_RPM}
        changed["providers"][UP]["base_url"] = b.base_url
        saved = time.monotonic()
        apply(gw, changed, how)
        gen = wait_generation(gw, 2)
        assert time.monotonic() - saved < RELOAD_LIVE_S
        a_count = len(a.received())

        # After: every part of the change is live.
        assert M_NEW in model_ids(app)
        assert ask(app, M_NEW).status == 200
        gone = ask(doomed, M_MOCK)
        assert (gone.status, gone.code) == (401, "invalid_api_key"), gone
        lowered = [ask(limited, M_MOCK) for _ in range(LOWERED_RPM + 1)]
        assert [r.status for r in lowered] == [200] * LOWERED_RPM + [429], lowered
        assert lowered[0].headers["x-ratelimit-limit-requests"] == str(LOWERED_RPM)
        assert lowered[-1].code == "rate_limit_exceeded"
        moved = [ask(app, M_GPT, stream=stream) for stream in (False, True, False)]
        assert [r.status for r in moved] == [200] * 3, moved
        for reply in moved:
            assert len(b.by_request_id(reply.request_id)) == 1, "B did not get the request"
        assert len(a.received()) == a_count, "A still gets traffic after the reload"

    assert reloads(gw, "error") == 0
    if how == "sighup":
        # SIGHUP and the watcher both saw this save; either may have applied it.
        gen = generation(gw)
        assert gen >= 2 and reloads(gw, "success") == gen - 1
    else:
        time.sleep(SETTLE_S)  # one save reloads once, not once per poll
        assert (generation(gw), reloads(gw, "success")) == (2, 1)
    assert_reloaded(gw, generation(gw))


def test_sighup_with_an_unchanged_file_reloads(start_gateway, fake_upstream,
                                               tmp_path_factory):
    """SIGHUP alone: generation 2, then 3, each counted as a success and logged; and
    the unchanged file is then left alone by the watcher."""
    gw = start_reload_gateway(start_gateway, tmp_path_factory, lambda workdir: reload_config(
        fake_upstream.base_url, workdir))
    assert (generation(gw), reloads(gw, "success"), reloads(gw, "error")) == (1, 0, 0)
    for gen in (2, 3):
        gw.send_signal(signal.SIGHUP)
        assert wait_generation(gw, gen) == gen
        assert reloads(gw, "success") == gen - 1
        assert_reloaded(gw, gen)
    time.sleep(SETTLE_S)
    assert (generation(gw), reloads(gw, "success"), reloads(gw, "error")) == (3, 2, 0)
    with make_client(gw, APP_KEY) as app:
        assert ask(app, M_GPT).status == 200


# --------------------------------------------------------------------------------------
# 2. A broken edit is rejected; the old config keeps serving
# --------------------------------------------------------------------------------------

UNSET_VAR = "SY_E2E_RELOAD_UNSET_" + secrets.token_hex(6).upper()


def yaml_syntax_error(config: dict) -> str:
    """The JSON text without its closing brace: a flow mapping never closed."""
    return json.dumps(config, indent=2)[:-1].rstrip() + "\n"


def unknown_key(config: dict) -> str:
    broken = copy.deepcopy(config)
    broken["providers"][UP]["retires"] = 3
    return json.dumps(broken, indent=2)


def unset_variable(config: dict) -> str:
    broken = copy.deepcopy(config)
    broken["providers"][UP]["api_key"] = f"${{{UNSET_VAR}}}"
    return json.dumps(broken, indent=2)


BROKEN_EDITS = {"yaml-syntax-error": yaml_syntax_error, "unknown-key": unknown_key,
                "unset-variable": unset_variable}


@pytest.mark.parametrize("case", BROKEN_EDITS)
def test_a_broken_edit_is_rejected_with_the_t_message_and_the_old_config_serves(
        case, start_gateway, fake_upstream, tmp_path_factory, monkeypatch):
    """The broken file (which also adds a model) is rejected once: the stderr line
    says `config reload rejected` and then exactly what `switchyard -t` says about
    the same file; the error counter moves, the generation does not, /readyz stays
    200, and the old config answers (the new model is not there). A fixed edit
    then reloads as usual."""
    monkeypatch.delenv(UNSET_VAR, raising=False)
    gw = start_reload_gateway(start_gateway, tmp_path_factory, lambda workdir: reload_config(
        fake_upstream.base_url, workdir))
    config = gw.config
    with make_client(gw, APP_KEY) as app:
        old_models = model_ids(app)
        gw.write_config(BROKEN_EDITS[case](with_new_model(config)))
        line = gw.wait_stderr("config reload rejected", timeout=RELOAD_LIVE_S)[0]
        status, output = check_with_t(gw.config_path)
        assert status != 0, output
        assert "invalid configuration: " in output, output
        message = output.split("invalid configuration: ", 1)[1].strip()
        assert str(gw.config_path) in message, message
        assert message in line.split("config reload rejected", 1)[1], (line, message)

        assert reloads(gw, "error") == 1
        time.sleep(SETTLE_S)  # the file stays broken: it is not retried at every poll
        assert (reloads(gw, "error"), reloads(gw, "success"), generation(gw)) == (1, 0, 1)
        assert len(gw.stderr_lines_with("config reload rejected")) == 1
        status, ready = gw.readyz()
        assert (status, ready["status"], ready["config_generation"]) == (200, "ready", 1)
        assert model_ids(app) == old_models and M_NEW not in old_models
        assert ask(app, M_GPT).status == 200
        assert ask(app, M_GPT, stream=True).status == 200
        assert ask(app, M_NEW).code == "model_not_found"

        # Fixed: the next save reloads.
        gw.write_config(with_new_model(config))
        assert wait_generation(gw, 2) == 2
        assert (reloads(gw, "success"), reloads(gw, "error")) == (1, 1)
        assert_reloaded(gw, 2)
        assert ask(app, M_NEW).status == 200


# --------------------------------------------------------------------------------------
# 3. Fields that need a restart
# --------------------------------------------------------------------------------------

def new_listen(config: dict) -> None:
    config["listen"] = f"127.0.0.1:{free_port()}"


def new_admin_listen(config: dict) -> None:
    config["admin_listen"] = f"127.0.0.1:{free_port()}"


def fewer_threads(config: dict) -> None:
    config["pingora"]["threads"] = 1


RESTART_ONLY = {"listen": new_listen, "admin_listen": new_admin_listen, "pingora": fewer_threads}


@pytest.mark.parametrize("field", RESTART_ONLY)
def test_a_field_that_needs_a_restart_warns_and_the_rest_applies(
        field, start_gateway, fake_upstream, tmp_path_factory):
    """Changing `field` (and adding a model) reloads: a warning names the field and
    says it `needs a restart`, the new model is served on the old ports, and a new
    listen address is not listened on."""
    gw = start_reload_gateway(start_gateway, tmp_path_factory, lambda workdir: reload_config(
        fake_upstream.base_url, workdir))
    changed = with_new_model(gw.config)
    RESTART_ONLY[field](changed)
    gw.write_config(changed)
    assert wait_generation(gw, 2) == 2
    assert (reloads(gw, "success"), reloads(gw, "error")) == (1, 0)
    warnings = gw.wait_stderr("needs a restart")
    named = re.compile(rf"(?<![A-Za-z_]){field}\b")  # `listen`, not `admin_listen`
    assert any(named.search(line) for line in warnings), warnings
    with make_client(gw, APP_KEY) as app:  # the old address, from gw.config
        assert ask(app, M_NEW).status == 200
        assert ask(app, M_GPT, stream=True).status == 200
    assert gw.readyz()[0] == 200  # the old admin address
    if field in ("listen", "admin_listen"):
        host, port = changed[field].rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=2).close()


# --------------------------------------------------------------------------------------
# 4. Twenty reloads under steady traffic
# --------------------------------------------------------------------------------------

RELOADS = 20
LOAD_THREADS = 3
SLOW_EVENTS, SLOW_MS = 10, 100  # a stream of about 1 s, in flight during each reload
M_SLOW = "rl-slow"


class Traffic:
    """Client threads looping chat completions (JSON and streams, the mock and the
    fake upstream) until stopped; every answer that is not a whole 200 is a
    failure."""

    def __init__(self, gw: Gateway, threads: int) -> None:
        self.gw = gw
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.done: Counter = Counter()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(n,), daemon=True)
                         for n in range(threads)]

    def __enter__(self) -> "Traffic":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def _loop(self, n: int) -> None:
        with make_client(self.gw, APP_KEY) as client:
            i = n
            while not self.stop.is_set():
                model, stream = ((M_GPT, False), (M_GPT, True), (M_MOCK, False),
                                 (M_MOCK, True))[i % 4]
                kind = f"{model} {'stream' if stream else 'json'}"
                try:
                    reply = ask(client, model, stream=stream)
                    ok = reply.status == 200
                    problem = f"{kind}: {reply}"
                except Exception as e:  # a broken stream, a dropped connection
                    ok, problem = False, f"{kind}: {e!r}"
                with self._lock:
                    if ok:
                        self.done[kind] += 1
                    else:
                        self.failures.append(problem)
                i += 1


class SlowStream:
    """A ~1 s stream of the slow fake on a thread of its own: what it delivered."""

    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client
        self.pieces: list[str] = []
        self.finish: list[str] = []
        self.error: str | None = None
        self.streaming = threading.Event()  # the first content arrived
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for chunk in self.client.chat.completions.create(model=M_SLOW, messages=CHAT,
                                                              stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    self.pieces.append(chunk.choices[0].delta.content)
                    self.streaming.set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    self.finish.append(chunk.choices[0].finish_reason)
        except Exception as e:  # noqa: BLE001 — reported by the test
            self.error = repr(e)
        finally:
            self.ended.set()
            self.streaming.set()

    def whole(self) -> bool:
        return (self.error is None and self.pieces == slow_pieces(SLOW_EVENTS)
                and self.finish == ["stop"])

    def __repr__(self) -> str:
        return f"SlowStream(pieces={self.pieces}, finish={self.finish}, error={self.error})"


def test_twenty_reloads_under_steady_traffic_fail_no_request(start_gateway, fake_upstream,
                                                              tmp_path_factory):
    """While client threads loop, 20 reloads (SIGHUP, an in-place edit and a rename
    in turn; the edits change a price), each triggered while a ~1 s stream is in
    flight and each waited for: no request fails, every stream ends whole,
    generation 21, 20 successes."""
    def make_config(workdir: Path) -> dict:
        config = reload_config(fake_upstream.base_url, workdir)
        config["models"][M_SLOW] = target(UP, slow_model(SLOW_EVENTS, SLOW_MS))
        return config

    gw = start_reload_gateway(start_gateway, tmp_path_factory, make_config)
    config = copy.deepcopy(gw.config)
    slow_streams: list[SlowStream] = []
    with Traffic(gw, LOAD_THREADS) as traffic, make_client(gw, APP_KEY) as slow_client:
        for i in range(1, RELOADS + 1):
            slow = SlowStream(slow_client)
            slow_streams.append(slow)
            assert slow.streaming.wait(5), f"reload {i}: the slow stream did not start"
            assert not slow.ended.is_set(), f"reload {i}: the slow stream ended early: {slow}"
            how = HOW[i % 3]
            if how == "sighup":
                gw.send_signal(signal.SIGHUP)
            else:
                config["models"][M_GPT]["targets"][0]["price"]["input_per_mtok"] = 2.5 + i
                gw.write_config(config, rename=how == "rename")
            assert wait_generation(gw, 1 + i, RELOAD_LIVE_S + 1) == 1 + i, f"reload {i} ({how})"
        for n, slow in enumerate(slow_streams, 1):
            assert slow.ended.wait(10), f"the slow stream of reload {n} never ended"
        time.sleep(0.2)  # traffic after the last reload too

    assert traffic.failures == [], f"{len(traffic.failures)} failed: {traffic.failures[:5]}"
    assert len(traffic.done) == 4 and min(traffic.done.values()) >= 5, traffic.done
    for n, slow in enumerate(slow_streams, 1):
        assert slow.whole(), f"the slow stream of reload {n}: {slow}"
    assert (generation(gw), reloads(gw, "success"), reloads(gw, "error")) == (
        RELOADS + 1, RELOADS, 0)
    assert len(gw.stderr_lines_with("config reloaded")) == RELOADS


# --------------------------------------------------------------------------------------
# 5. State carried over
# --------------------------------------------------------------------------------------

def test_a_keys_spent_budget_survives_a_reload(start_gateway, fake_upstream, tmp_path_factory):
    """A key allowed 5 requests a minute spends 3; a reload that changes another
    model leaves it 2: the third request after the reload is refused, where a fresh
    bucket would admit 5."""
    def make_config(workdir: Path) -> dict:
        config = reload_config(fake_upstream.base_url, workdir)
        for key in config["keys"]:
            if key["name"] == "rl-limited":
                key["rate_limit"] = {"requests_per_minute": BUDGET_RPM}
        return config

    gw = start_reload_gateway(start_gateway, tmp_path_factory, make_config)
    with make_client(gw, LIMITED_KEY) as limited:
        spent = [ask(limited, M_MOCK) for _ in range(3)]
        assert [r.status for r in spent] == [200] * 3
        assert spent[-1].headers["x-ratelimit-remaining-requests"] == "2"
        apply(gw, with_new_model(gw.config), "sighup")
        wait_generation(gw, 2)
        after = [ask(limited, M_MOCK) for _ in range(3)]
        assert [r.status for r in after] == [200, 200, 429], after
        assert [r.headers["x-ratelimit-remaining-requests"] for r in after[:2]] == ["1", "0"]
        assert after[-1].code == "rate_limit_exceeded"
        # The model the reload added draws on the same (spent) budget.
        assert ask(limited, M_NEW).status == 429


FLAKY = "flaky"
M_BREAKER = "rl-breaker"
BREAKER_THRESHOLD = 2


def test_an_open_circuit_stays_open_across_a_reload(start_gateway, fake_upstream,
                                                    tmp_path_factory):
    """A primary target that answers 500 opens its circuit after 2 failed requests
    (each served by the secondary); a reload that does not touch it keeps the
    circuit open: the gauge stays 1 and the next request skips the primary (one
    try, the primary's upstream never asked)."""
    def make_config(workdir: Path) -> dict:
        config = reload_config(fake_upstream.base_url, workdir)
        config["providers"][FLAKY] = {
            "type": "openai", "base_url": fake_upstream.base_url, "api_key": PROVIDER_KEY,
            "circuit_breaker": {"failure_threshold": BREAKER_THRESHOLD,
                                "recovery_timeout": "60s"}}
        config["models"][M_BREAKER] = {"targets": [
            {"provider": FLAKY, "model": UP_SERVER_ERROR, "priority": 1},
            {"provider": UP, "model": UP_CHAT, "priority": 2}]}
        return config

    gw = start_reload_gateway(start_gateway, tmp_path_factory, make_config)
    labels = {"provider": FLAKY, "target": f"{FLAKY}/{UP_SERVER_ERROR}"}

    def primary_asked(reply: Reply) -> bool:
        return any((r.json or {}).get("model") == UP_SERVER_ERROR
                   for r in fake_upstream.by_request_id(reply.request_id))

    with make_client(gw, APP_KEY) as app:
        assert gw.metric("switchyard_circuit_open", **labels) == 0
        for _ in range(BREAKER_THRESHOLD):
            reply = ask(app, M_BREAKER)
            assert (reply.status, reply.headers["x-switchyard-attempts"]) == (200, "2"), reply
            assert primary_asked(reply)
        wait_until("the circuit gauge", lambda: gw.metric("switchyard_circuit_open", **labels),
                   lambda v: v == 1, 2)
        skipped = ask(app, M_BREAKER)
        assert (skipped.status, skipped.headers["x-switchyard-attempts"]) == (200, "1")
        assert not primary_asked(skipped)

        apply(gw, with_new_model(gw.config), "sighup")
        wait_generation(gw, 2)
        assert gw.metric("switchyard_circuit_open", **labels) == 1
        after = ask(app, M_BREAKER)
        assert (after.status, after.headers["x-switchyard-attempts"],
                after.headers["x-switchyard-provider"]) == (200, "1", UP), after
        assert not primary_asked(after)
        assert gw.metric("switchyard_circuit_open", **labels) == 1


SICK = "sick"
M_HEALTH = "rl-health"


def test_an_unhealthy_target_stays_unhealthy_across_a_reload(start_gateway, fake_upstream,
                                                             tmp_path_factory):
    """A primary whose health probe fails (its `/models` is a 404) is marked
    unhealthy by its first probe; probes then wait 60 s. A reload that does not
    touch it keeps it unhealthy: the gauge stays 0 and requests skip it (one try,
    on the secondary). A reset would read healthy until the next probe, a minute
    later."""
    def make_config(workdir: Path) -> dict:
        config = reload_config(fake_upstream.base_url, workdir)
        config["providers"][SICK] = {
            "type": "openai", "base_url": fake_upstream.origin + "/sick/v1",
            "api_key": PROVIDER_KEY,
            "health_check": {"interval": "60s", "timeout": "1s", "failure_threshold": 1},
            "circuit_breaker": {"failure_threshold": 1000, "recovery_timeout": "60s"}}
        config["models"][M_HEALTH] = {"targets": [
            {"provider": SICK, "model": UP_CHAT, "priority": 1},
            {"provider": UP, "model": UP_CHAT, "priority": 2}]}
        return config

    gw = start_reload_gateway(start_gateway, tmp_path_factory, make_config)
    labels = {"provider": SICK, "target": f"{SICK}/{UP_CHAT}"}
    wait_until("the healthy gauge", lambda: gw.metric("switchyard_upstream_healthy", **labels),
               lambda v: v == 0, 3)
    with make_client(gw, APP_KEY) as app:
        before = ask(app, M_HEALTH)
        assert (before.status, before.headers["x-switchyard-attempts"],
                before.headers["x-switchyard-provider"]) == (200, "1", UP), before

        apply(gw, with_new_model(gw.config), "sighup")
        wait_generation(gw, 2)
        assert gw.metric("switchyard_upstream_healthy", **labels) == 0
        after = ask(app, M_HEALTH)
        assert (after.status, after.headers["x-switchyard-attempts"],
                after.headers["x-switchyard-provider"]) == (200, "1", UP), after
        assert gw.metric("switchyard_upstream_healthy", **labels) == 0


# --------------------------------------------------------------------------------------
# 6. `*_file` secrets are re-read
# --------------------------------------------------------------------------------------

KEYED = "keyed"
M_KEYED = "rl-keyed"


def test_sighup_re_reads_an_api_key_file(start_gateway, fake_upstream, tmp_path_factory,
                                         tmp_path):
    """A provider's `api_key_file` is rotated, then SIGHUP (the config file itself
    unchanged): the upstream gets the new key from then on."""
    old_key = "sk-upstream-e2e-old-" + secrets.token_hex(16)
    new_key = "sk-upstream-e2e-new-" + secrets.token_hex(16)
    key_file = tmp_path / "provider.key"
    key_file.write_text(old_key + "\n")

    def make_config(workdir: Path) -> dict:
        config = reload_config(fake_upstream.base_url, workdir)
        config["providers"][KEYED] = {"type": "openai", "base_url": fake_upstream.base_url,
                                      "api_key_file": str(key_file)}
        config["models"][M_KEYED] = target(KEYED, UP_CHAT)
        return config

    gw = start_reload_gateway(start_gateway, tmp_path_factory, make_config)

    def key_sent(reply: Reply) -> str | None:
        assert reply.status == 200, reply
        (received,) = fake_upstream.by_request_id(reply.request_id)
        return received.header("authorization")

    with make_client(gw, APP_KEY) as app:
        assert key_sent(ask(app, M_KEYED)) == f"Bearer {old_key}"
        key_file.write_text(new_key + "\n")
        gw.send_signal(signal.SIGHUP)
        assert wait_generation(gw, 2) == 2
        assert key_sent(ask(app, M_KEYED)) == f"Bearer {new_key}"
        assert key_sent(ask(app, M_KEYED, stream=True)) == f"Bearer {new_key}"
    assert old_key not in gw.stderr_text() and new_key not in gw.stderr_text()

