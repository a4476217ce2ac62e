"""Prometheus metrics on the admin listener, the access log beside them, and the
request-scoped headers (trace context, request ids) that tie them together.

A gateway of its own (`metrics_gateway`) serves one model per situation, in front
of the fake OpenAI upstream, the fake Azure resource, the SigV4-checking fake
Bedrock Runtime, a port that refuses connections, a `/models` fake whose health
can be switched, and the built-in mock. Tests run one after another, so each one
takes a snapshot of /metrics, makes its requests, waits for their access-log lines
(the gateway counts a request's metrics before it writes that line), takes another
snapshot and asserts exact deltas — of whole metric families where it can, so a
request counted under a wrong label fails the test too.

Snapshots are parsed with `prometheus_client` into {(sample name, labels): value};
sample names keep `_total`, `_bucket`, `_count` and `_sum`. Expected values come
from the fakes' own data (UP_USAGE, the Azure and Bedrock recordings they replay),
never from the gateway.

The contract: DESIGN.md §2 "Metrics", "Access log" and "HTTP surface".
"""

from __future__ import annotations

import json
import math
import re
import secrets
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (
    ACCESS_LOG_KEYS,
    AZ_DEP_CHAT_PREVIEW,
    AZURE_KEY,
    AZURE_PREVIEW_VERSION,
    BEDROCK_ACCESS_KEY_ID,
    BEDROCK_MODEL_ID,
    BEDROCK_SECRET,
    BEDROCK_SESSION_TOKEN,
    BR_TEXT,
    BRS_TEXT,
    PROVIDER_KEY,
    ROUTING,
    UP_BAD_REQUEST,
    UP_CHAT,
    UP_SERVER_ERROR,
    UP_UNAUTHORIZED,
    UP_USAGE,
    RecordingHandler,
    RecordingServer,
    azure_provider,
    azure_recordings,
    bedrock_answer_body,
    bedrock_provider,
    bedrock_stream_bytes,
    collect,
    eventstream_frames,
    free_port,
    make_client,
    new_request_id,
    pingora_settings,
    serving,
    start_on_free_ports,
)

# Virtual keys of the metrics gateway.
APP_KEY = "sk-sy-e2e-metrics-app-" + secrets.token_hex(12)
LIMITED_KEY = "sk-sy-e2e-metrics-limited-" + secrets.token_hex(12)
LIMITED_KEY_NAME = "mx-limited"
LIMITED_RPM = 3  # requests_per_minute: one request back every 20 s, far beyond a burst

# Providers.
OPENAI = "mx-openai"      # the fake OpenAI upstream
AZURE = "mx-azure"        # the fake Azure resource
BEDROCK = "mx-bedrock"    # the fake Bedrock Runtime (STS credentials, SigV4 checked)
REFUSED = "mx-refused"    # a 127.0.0.1 port that refuses connections
HEALTH = "mx-health"      # the switchable /models fake, probed fast
BREAKER = "mx-breaker"    # the fake OpenAI upstream, with a circuit that opens quickly
MOCK = "mx-mock"          # the built-in mock

# Models (public names), one per situation.
M_CHAT = "mx-chat"                  # OpenAI, priced
M_UNPRICED = "mx-unpriced"          # OpenAI, no price
M_UPSTREAM_401 = "mx-upstream-401"  # the fake refuses the provider key: 502
M_BAD_REQUEST = "mx-bad-request"    # the fake answers 400: passed through
M_AZURE = "mx-azure-chat"           # Azure (a preview api-version: stream usage), priced
M_BEDROCK = "mx-bedrock-chat"       # Bedrock Converse / ConverseStream, priced
M_FAILOVER = "mx-failover"          # the refused port first, then OpenAI
M_HEALTH = "mx-health-chat"         # the health-switchable fake
M_BREAKER = "mx-breaker-chat"       # always 500: opens its circuit
M_MOCK = "mx-mock-chat"             # the built-in mock

# Prices, USD per million tokens (input, output): distinct per provider.
PRICE_OPENAI = (2.5, 10.0)
PRICE_AZURE = (3.0, 12.0)
PRICE_BEDROCK = (0.25, 1.25)

HEALTH_UPSTREAM_MODEL = "health-gpt"
HEALTH_CHECK = {"interval": "100ms", "timeout": "100ms", "failure_threshold": 1}
HEALTH_SWITCH_S = 2.0  # the gauge follows the fake within this
BREAKER_THRESHOLD = 2
# Every other target's circuit stays closed whatever a test's failures.
NEVER_OPENS = {"failure_threshold": 1000, "recovery_timeout": "60s"}

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "rojo=00f067aa0ba902b7"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
INVALID_REQUEST_ID = "has space"

CHAT = [{"role": "user", "content": "Which city is the capital of Denmark?"}]
SCRAPE_POLL_S = 0.05
SCRAPE_WAIT_S = 5.0

Snapshot = dict[tuple[str, frozenset], float]


# --------------------------------------------------------------------------------------
# A /models fake whose health can be switched
# --------------------------------------------------------------------------------------

class SwitchableModelsHandler(RecordingHandler):
    """`GET /v1/models`: 200 with an empty list while the server is healthy, 503
    otherwise. Health probes are not recorded (they come every 100 ms)."""

    server: "SwitchableModelsServer"

    def do_GET(self) -> None:  # noqa: N802
        if self.server.healthy.is_set():
            self._send_json(200, {"object": "list", "data": []})
        else:
            self._send_json(503, {"error": {"message": "down for the test",
                                            "type": "server_error", "param": None,
                                            "code": None}})


class SwitchableModelsServer(RecordingServer):
    """An OpenAI-shaped upstream that only answers health probes; healthy at start."""

    def __init__(self) -> None:
        super().__init__(SwitchableModelsHandler)
        self.healthy = threading.Event()
        self.healthy.set()

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"


# --------------------------------------------------------------------------------------
# The gateway
# --------------------------------------------------------------------------------------

def target_id(target: dict) -> str:
    """A target's identity: its `name`, or `<provider>/<model or deployment>`."""
    upstream = target.get("model") or target["deployment"]
    return target.get("name") or f"{target['provider']}/{upstream}"


def priced(price: tuple[float, float]) -> dict:
    """A target's `price` from (input, output) USD per million tokens."""
    return {"input_per_mtok": price[0], "output_per_mtok": price[1]}


def metrics_gateway_config(upstream_base_url: str, azure_origin: str, bedrock_origin: str,
                           health_base_url: str, refused_port: int, workdir: Path) -> dict:
    """Two keys (one limited), a provider per kind of upstream, a model per situation."""
    def one(provider: str, model: str, **extra) -> dict:
        return {"targets": [{"provider": provider, "model": model, **extra}]}

    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "keys": [
            {"name": "mx-app", "key": APP_KEY},
            {"name": LIMITED_KEY_NAME, "key": LIMITED_KEY,
             "rate_limit": {"requests_per_minute": LIMITED_RPM}},
        ],
        "providers": {
            OPENAI: {"type": "openai", "base_url": upstream_base_url, "api_key": PROVIDER_KEY},
            AZURE: azure_provider(azure_origin, AZURE_KEY),
            BEDROCK: bedrock_provider(
                bedrock_origin, access_key_id=BEDROCK_ACCESS_KEY_ID,
                secret_access_key=BEDROCK_SECRET, session_token=BEDROCK_SESSION_TOKEN),
            REFUSED: {"type": "openai", "base_url": f"http://127.0.0.1:{refused_port}/v1",
                      "api_key": PROVIDER_KEY},
            HEALTH: {"type": "openai", "base_url": health_base_url, "api_key": PROVIDER_KEY,
                     "health_check": HEALTH_CHECK},
            BREAKER: {"type": "openai", "base_url": upstream_base_url, "api_key": PROVIDER_KEY,
                      "circuit_breaker": {"failure_threshold": BREAKER_THRESHOLD,
                                          "recovery_timeout": "60s"}},
            MOCK: {"type": "mock"},
        },
        "models": {
            M_CHAT: one(OPENAI, UP_CHAT, name="mx-chat-priced", price=priced(PRICE_OPENAI)),
            M_UNPRICED: one(OPENAI, UP_CHAT, name="mx-chat-unpriced"),
            M_UPSTREAM_401: one(OPENAI, UP_UNAUTHORIZED),
            M_BAD_REQUEST: one(OPENAI, UP_BAD_REQUEST),
            M_AZURE: {"targets": [{"provider": AZURE, "deployment": AZ_DEP_CHAT_PREVIEW,
                                   "api_version": AZURE_PREVIEW_VERSION,
                                   "price": priced(PRICE_AZURE)}]},
            M_BEDROCK: one(BEDROCK, BEDROCK_MODEL_ID, price=priced(PRICE_BEDROCK)),
            M_FAILOVER: {"targets": [
                {"provider": REFUSED, "model": UP_CHAT, "priority": 1},
                {"provider": OPENAI, "model": UP_CHAT, "name": "mx-failover-second",
                 "priority": 2},
            ]},
            M_HEALTH: one(HEALTH, HEALTH_UPSTREAM_MODEL),
            M_BREAKER: one(BREAKER, UP_SERVER_ERROR),
            M_MOCK: one(MOCK, "mock-chat-1"),
        },
        "routing": dict(ROUTING, circuit_breaker=NEVER_OPENS),
        "pingora": pingora_settings(workdir),
    }


@pytest.fixture(scope="module")
def health_fake() -> Iterator[SwitchableModelsServer]:
    """The switchable /models fake, healthy at start."""
    with serving(SwitchableModelsServer()) as server:
        yield server


@pytest.fixture(scope="module")
def metrics_gateway(start_gateway, fake_upstream, fake_azure, fake_bedrock, health_fake,
                    refused_port, tmp_path_factory):
    """A gateway of its own: its deltas are this module's traffic only."""
    return start_on_free_ports(start_gateway, tmp_path_factory, lambda workdir: (
        metrics_gateway_config(fake_upstream.base_url, fake_azure.origin, fake_bedrock.origin,
                               health_fake.base_url, refused_port, workdir)))


@pytest.fixture(scope="module", autouse=True)
def startup_metrics(metrics_gateway) -> Snapshot:
    """/metrics as the gateway exports it right after start-up, before any traffic
    (autouse: taken before the module's first test)."""
    return scrape(metrics_gateway)


@pytest.fixture(scope="module")
def app(metrics_gateway) -> Iterator[openai.OpenAI]:
    """The OpenAI SDK on the metrics gateway, with the unlimited key."""
    c = make_client(metrics_gateway, APP_KEY)
    yield c
    c.close()


# --------------------------------------------------------------------------------------
# Metrics helpers
# --------------------------------------------------------------------------------------

def labels(**values: str) -> frozenset:
    """A label set, as the keys of `moved` and `Snapshot` hold them."""
    return frozenset(values.items())


def parse(text: str) -> Snapshot:
    """{(sample name, labels): value} of a Prometheus text exposition."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples}


def scrape(gateway) -> Snapshot:
    """A snapshot of the gateway's /metrics."""
    return parse(gateway.metrics_text())


def moved(before: Snapshot, after: Snapshot, name: str) -> dict[frozenset, float]:
    """{labels: after - before} of every `name` sample that changed (a series that
    appeared counts from 0)."""
    deltas = {}
    for (sample, sample_labels), value in after.items():
        if sample == name:
            delta = value - before.get((sample, sample_labels), 0.0)
            if delta:
                deltas[sample_labels] = delta
    return deltas


def total_moved(before: Snapshot, after: Snapshot, name: str) -> float:
    """How far `name` moved, summed over its label sets."""
    return sum(moved(before, after, name).values())


def wait_for_metric(gateway, key: tuple[str, frozenset], want: float,
                    timeout: float = SCRAPE_WAIT_S) -> Snapshot:
    """Scrapes until the sample `key` equals `want` (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = scrape(gateway)
        if snapshot.get(key) == want:
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} is {snapshot.get(key)}, not {want}, "
                                 f"after {timeout}s")
        time.sleep(SCRAPE_POLL_S)


def assert_histograms_consistent(snapshot: Snapshot) -> None:
    """Every histogram series: buckets cumulative (non-decreasing in `le`) and its
    `+Inf` bucket equal to its `_count`."""
    buckets: dict[tuple[str, frozenset], list[tuple[float, float]]] = {}
    for (name, sample_labels), value in snapshot.items():
        if name.endswith("_bucket"):
            le = dict(sample_labels)["le"]
            series = (name[: -len("_bucket")], sample_labels - {("le", le)})
            buckets.setdefault(series, []).append((float(le), value))
    assert buckets, "no histogram series"
    for (base, series_labels), points in buckets.items():
        points.sort()
        counts = [count for _, count in points]
        assert counts == sorted(counts), f"{base}{dict(series_labels)}: not cumulative {points}"
        assert points[-1][0] == math.inf, f"{base}{dict(series_labels)}: no +Inf bucket"
        assert counts[-1] == snapshot[(base + "_count", series_labels)], (
            f"{base}{dict(series_labels)}: +Inf bucket {counts[-1]} is not _count")


# --------------------------------------------------------------------------------------
# Request helpers
# --------------------------------------------------------------------------------------

@dataclass
class Answer:
    """What the client got: the status, the response headers and, for an error,
    the envelope's `error` object."""

    request_id: str  # the x-request-id the client sent
    status: int
    headers: dict
    error: dict | None


def chat(client: openai.OpenAI, model: str, *, stream: bool = False,
         request_id: str | None = None, headers: dict | None = None) -> Answer:
    """One chat completion through the SDK (a stream is read to its end); an error
    answer is returned, not raised."""
    request_id = request_id or new_request_id("mx")
    extra = {"x-request-id": request_id, **(headers or {})}
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=CHAT, stream=stream, extra_headers=extra)
        if stream:
            pieces, _ = collect(raw.parse())
            assert pieces, "the stream carried no content"
        else:
            raw.parse()
        return Answer(request_id, raw.status_code, dict(raw.headers), None)
    except openai.APIStatusError as e:
        return Answer(request_id, e.status_code, dict(e.response.headers),
                      e.response.json()["error"])


def chats(client: openai.OpenAI, model: str, count: int, **kwargs) -> list[Answer]:
    """`count` chats, one after another (see `chat`)."""
    return [chat(client, model, **kwargs) for _ in range(count)]


def logged(gateway, answers: list[Answer]) -> list[dict]:
    """The access-log line of each answer. Once a request's line is out, its
    metrics are counted (the gateway counts them first)."""
    return [gateway.log_for(a.request_id) for a in answers]


def statuses(answers: list[Answer]) -> list[int]:
    """The HTTP status of each answer."""
    return [a.status for a in answers]


# --------------------------------------------------------------------------------------
# 1. Requests, tries and histograms
# --------------------------------------------------------------------------------------

SUCCESSES = 5
FAILURES = 3


def test_requests_attempts_and_histograms_count_each_request_once(app, metrics_gateway):
    """K successes, J upstream 401s (502 `upstream_auth_failed`) and J upstream 400s
    (passed through): requests by model, provider and status; one try each, by
    outcome; one duration per request, one overhead per request; histograms
    consistent."""
    before = scrape(metrics_gateway)
    ok = chats(app, M_CHAT, SUCCESSES)
    refused = chats(app, M_UPSTREAM_401, FAILURES)
    bad = chats(app, M_BAD_REQUEST, FAILURES)
    assert statuses(ok) == [200] * SUCCESSES
    assert statuses(refused) == [502] * FAILURES
    assert {a.error["code"] for a in refused} == {"upstream_auth_failed"}
    assert statuses(bad) == [400] * FAILURES
    logged(metrics_gateway, ok + refused + bad)
    after = scrape(metrics_gateway)

    assert moved(before, after, "switchyard_requests_total") == {
        labels(model=M_CHAT, provider=OPENAI, status="200"): SUCCESSES,
        labels(model=M_UPSTREAM_401, provider=OPENAI, status="502"): FAILURES,
        labels(model=M_BAD_REQUEST, provider=OPENAI, status="400"): FAILURES,
    }
    assert moved(before, after, "switchyard_upstream_attempts_total") == {
        labels(provider=OPENAI, outcome="success"): SUCCESSES,
        labels(provider=OPENAI, outcome="http_4xx"): 2 * FAILURES,
    }
    assert moved(before, after, "switchyard_request_duration_seconds_count") == {
        labels(model=M_CHAT, provider=OPENAI): SUCCESSES,
        labels(model=M_UPSTREAM_401, provider=OPENAI): FAILURES,
        labels(model=M_BAD_REQUEST, provider=OPENAI): FAILURES,
    }
    assert total_moved(before, after, "switchyard_overhead_seconds_count") == (
        SUCCESSES + 2 * FAILURES)
    assert moved(before, after, "switchyard_failovers_total") == {}
    assert_histograms_consistent(after)


# --------------------------------------------------------------------------------------
# 2. Answers made locally
# --------------------------------------------------------------------------------------

LOCAL_ANSWERS = 2


def test_local_answers_are_labelled_unknown_and_none(app, metrics_gateway):
    """An unconfigured model (404) and a wrong key (401, even for a configured
    model: the key is checked before the body is read) count as model "unknown",
    provider "none"; the client's model name never becomes a label value."""
    stranger = "mx-not-configured-" + secrets.token_hex(6)
    before = scrape(metrics_gateway)
    unknown = chats(app, stranger, LOCAL_ANSWERS)
    wrong_key = make_client(metrics_gateway, "sk-sy-e2e-wrong-" + secrets.token_hex(12))
    try:
        unauthorized = chats(wrong_key, M_CHAT, LOCAL_ANSWERS)
    finally:
        wrong_key.close()
    assert statuses(unknown) == [404] * LOCAL_ANSWERS
    assert statuses(unauthorized) == [401] * LOCAL_ANSWERS
    logged(metrics_gateway, unknown + unauthorized)
    text = metrics_gateway.metrics_text()
    after = parse(text)

    assert moved(before, after, "switchyard_requests_total") == {
        labels(model="unknown", provider="none", status="404"): LOCAL_ANSWERS,
        labels(model="unknown", provider="none", status="401"): LOCAL_ANSWERS,
    }
    assert moved(before, after, "switchyard_request_duration_seconds_count") == {
        labels(model="unknown", provider="none"): 2 * LOCAL_ANSWERS}
    assert total_moved(before, after, "switchyard_overhead_seconds_count") == 2 * LOCAL_ANSWERS
    assert moved(before, after, "switchyard_upstream_attempts_total") == {}
    assert stranger not in text
    assert all(stranger not in dict(sample_labels).values() for _, sample_labels in after)


# --------------------------------------------------------------------------------------
# 3. Tokens and cost
# --------------------------------------------------------------------------------------

def bedrock_stream_usage() -> dict:
    """The `usage` of the metadata event in the ConverseStream bytes the fake sends."""
    for frame in eventstream_frames(bedrock_stream_bytes(BRS_TEXT)):
        _, headers_length = struct.unpack_from(">II", frame, 0)
        payload = json.loads(frame[12 + headers_length:-4])
        if "usage" in payload:
            return payload["usage"]
    raise AssertionError("no usage in the Bedrock stream capture")


def openai_usage(usage: dict) -> tuple[int, int]:
    """(input, output) tokens of an OpenAI/Azure `usage` object."""
    return usage["prompt_tokens"], usage["completion_tokens"]


def bedrock_usage(usage: dict) -> tuple[int, int]:
    """(input, output) tokens of a Bedrock `usage` object (no cache tokens in the
    recordings used here)."""
    return usage["inputTokens"], usage["outputTokens"]


@dataclass(frozen=True)
class TokenCase:
    """One kind of answer whose usage the metrics must count."""

    model: str
    provider: str
    stream: bool
    usage: Callable[[], tuple[int, int]]  # (input, output) the fake reports
    price: tuple[float, float] | None


TOKEN_CASES = {
    "openai-json": TokenCase(M_CHAT, OPENAI, False, lambda: openai_usage(UP_USAGE),
                             PRICE_OPENAI),
    "openai-stream": TokenCase(M_CHAT, OPENAI, True, lambda: openai_usage(UP_USAGE),
                               PRICE_OPENAI),
    "unpriced-json": TokenCase(M_UNPRICED, OPENAI, False, lambda: openai_usage(UP_USAGE),
                               None),
    "unpriced-stream": TokenCase(M_UNPRICED, OPENAI, True, lambda: openai_usage(UP_USAGE),
                                 None),
    "azure-json": TokenCase(M_AZURE, AZURE, False,
                            lambda: openai_usage(azure_recordings().chat["usage"]), PRICE_AZURE),
    "azure-stream": TokenCase(M_AZURE, AZURE, True,
                              lambda: openai_usage(azure_recordings().stream_usage),
                              PRICE_AZURE),
    "bedrock-json": TokenCase(M_BEDROCK, BEDROCK, False, lambda: bedrock_usage(
        json.loads(bedrock_answer_body(BR_TEXT))["usage"]), PRICE_BEDROCK),
    "bedrock-stream": TokenCase(M_BEDROCK, BEDROCK, True,
                                lambda: bedrock_usage(bedrock_stream_usage()), PRICE_BEDROCK),
}
TOKEN_REQUESTS = 2


@pytest.mark.parametrize("case", TOKEN_CASES)
def test_tokens_and_cost_follow_the_upstreams_usage(case, app, metrics_gateway):
    """Each request adds the usage the fake reported (the gateway asks a stream's
    upstream for it) to the tokens counters, and its price to the cost counter —
    no cost at all for a target without a price; the access log says the same."""
    c = TOKEN_CASES[case]
    input_tokens, output_tokens = c.usage()
    cost = (None if c.price is None else
            input_tokens * c.price[0] / 1e6 + output_tokens * c.price[1] / 1e6)
    before = scrape(metrics_gateway)
    answers = chats(app, c.model, TOKEN_REQUESTS, stream=c.stream)
    assert statuses(answers) == [200] * TOKEN_REQUESTS
    lines = logged(metrics_gateway, answers)
    after = scrape(metrics_gateway)

    assert moved(before, after, "switchyard_tokens_total") == {
        labels(model=c.model, provider=c.provider, kind="input"): TOKEN_REQUESTS * input_tokens,
        labels(model=c.model, provider=c.provider, kind="output"): TOKEN_REQUESTS * output_tokens,
    }
    cost_moved = moved(before, after, "switchyard_cost_usd_total")
    if cost is None:
        assert cost_moved == {}
    else:
        assert cost_moved.keys() == {labels(model=c.model, provider=c.provider)}
        assert math.isclose(sum(cost_moved.values()), TOKEN_REQUESTS * cost, rel_tol=1e-9)
    for line in lines:
        assert (line["input_tokens"], line["output_tokens"], line["usage_estimated"]) == (
            input_tokens, output_tokens, False), line
        if cost is None:
            assert line["cost_usd"] is None, line
        else:
            assert math.isclose(line["cost_usd"], cost, rel_tol=1e-9), line


# --------------------------------------------------------------------------------------
# 4. Time to first token
# --------------------------------------------------------------------------------------

TTFT_STREAMS = 3
TTFT_WHOLE = 2


def test_time_to_first_token_is_observed_for_streams_only(app, metrics_gateway):
    """Streams observe a time to first token; whole JSON answers do not."""
    before = scrape(metrics_gateway)
    answers = (chats(app, M_CHAT, TTFT_STREAMS, stream=True)
               + chats(app, M_CHAT, TTFT_WHOLE))
    assert statuses(answers) == [200] * (TTFT_STREAMS + TTFT_WHOLE)
    logged(metrics_gateway, answers)
    after = scrape(metrics_gateway)

    assert moved(before, after, "switchyard_time_to_first_token_seconds_count") == {
        labels(model=M_CHAT, provider=OPENAI): TTFT_STREAMS}
    assert moved(before, after, "switchyard_request_duration_seconds_count") == {
        labels(model=M_CHAT, provider=OPENAI): TTFT_STREAMS + TTFT_WHOLE}
    assert_histograms_consistent(after)


# --------------------------------------------------------------------------------------
# 5. Failover
# --------------------------------------------------------------------------------------

FAILOVER_REQUESTS = 3


def test_failover_counts_the_switch_and_both_tries(app, metrics_gateway):
    """The first target refuses the connection, the second answers: one failover and
    a connect_error try per request, and the request is labelled with the provider
    that answered (the last one tried)."""
    before = scrape(metrics_gateway)
    answers = chats(app, M_FAILOVER, FAILOVER_REQUESTS)
    assert statuses(answers) == [200] * FAILOVER_REQUESTS
    assert {(a.headers["x-switchyard-attempts"], a.headers["x-switchyard-provider"])
            for a in answers} == {("2", OPENAI)}
    logged(metrics_gateway, answers)
    after = scrape(metrics_gateway)

    assert moved(before, after, "switchyard_failovers_total") == {
        labels(model=M_FAILOVER): FAILOVER_REQUESTS}
    assert moved(before, after, "switchyard_upstream_attempts_total") == {
        labels(provider=REFUSED, outcome="connect_error"): FAILOVER_REQUESTS,
        labels(provider=OPENAI, outcome="success"): FAILOVER_REQUESTS,
    }
    assert moved(before, after, "switchyard_requests_total") == {
        labels(model=M_FAILOVER, provider=OPENAI, status="200"): FAILOVER_REQUESTS}


# --------------------------------------------------------------------------------------
# 6. Health and circuit gauges
# --------------------------------------------------------------------------------------

def all_targets(gateway) -> list[tuple[str, str]]:
    """(provider, target id) of every configured target."""
    return sorted({(t["provider"], target_id(t)) for model in gateway.config["models"].values()
                   for t in model["targets"]})


def test_gauges_exist_for_every_target_from_start_up(metrics_gateway, startup_metrics):
    """Before any traffic, every target has a healthy gauge at 1 and a circuit gauge
    at 0."""
    for provider, target in all_targets(metrics_gateway):
        key = labels(provider=provider, target=target)
        assert startup_metrics.get(("switchyard_upstream_healthy", key)) == 1, (provider, target)
        assert startup_metrics.get(("switchyard_circuit_open", key)) == 0, (provider, target)


def test_healthy_gauge_follows_the_health_checks(metrics_gateway, health_fake):
    """The fake's /models starts failing: the gauge drops to 0 within a couple of
    probe intervals; it recovers: the gauge is back to 1."""
    key = ("switchyard_upstream_healthy",
           labels(provider=HEALTH, target=f"{HEALTH}/{HEALTH_UPSTREAM_MODEL}"))
    wait_for_metric(metrics_gateway, key, 1)
    health_fake.healthy.clear()
    try:
        wait_for_metric(metrics_gateway, key, 0, HEALTH_SWITCH_S)
    finally:
        health_fake.healthy.set()
    wait_for_metric(metrics_gateway, key, 1, HEALTH_SWITCH_S)


def test_circuit_gauge_opens_after_consecutive_failures(app, metrics_gateway):
    """`circuit_breaker: {failure_threshold: 2}`: closed (0) after one failed
    request, open (1) after the second."""
    key = ("switchyard_circuit_open",
           labels(provider=BREAKER, target=f"{BREAKER}/{UP_SERVER_ERROR}"))
    assert scrape(metrics_gateway)[key] == 0
    for failures in range(1, BREAKER_THRESHOLD + 1):
        answer = chat(app, M_BREAKER)
        assert answer.status == 502
        logged(metrics_gateway, [answer])
        assert scrape(metrics_gateway)[key] == (1 if failures == BREAKER_THRESHOLD else 0)


# --------------------------------------------------------------------------------------
# 7. Config and access-log gauges
# --------------------------------------------------------------------------------------

CONFIG_TEST_REQUESTS = 2


def test_config_series_exist_from_start_up(app, metrics_gateway, startup_metrics):
    """Generation 1 and both reload results at 0 from start-up on, and still so
    after traffic, with no access-log line dropped."""
    answers = chats(app, M_MOCK, CONFIG_TEST_REQUESTS)
    logged(metrics_gateway, answers)
    after = scrape(metrics_gateway)
    for snapshot in (startup_metrics, after):
        assert snapshot[("switchyard_config_generation", labels())] == 1
        assert snapshot[("switchyard_config_reloads_total", labels(result="success"))] == 0
        assert snapshot[("switchyard_config_reloads_total", labels(result="error"))] == 0
    assert after[("switchyard_access_log_dropped_total", labels())] == 0


# --------------------------------------------------------------------------------------
# 8. Rate limits
# --------------------------------------------------------------------------------------

OVER_LIMIT = 2


def test_rate_limited_counts_each_429_of_the_key(metrics_gateway, startup_metrics):
    """A key limited to N requests a minute sends N+M at once: exactly M are refused,
    and its counter (present at 0 from start-up) moves by M."""
    key = ("switchyard_rate_limited_total", labels(key=LIMITED_KEY_NAME))
    assert startup_metrics.get(key) == 0
    before = scrape(metrics_gateway)
    limited = make_client(metrics_gateway, LIMITED_KEY)
    try:
        answers = chats(limited, M_MOCK, LIMITED_RPM + OVER_LIMIT)
    finally:
        limited.close()
    assert sorted(statuses(answers)) == [200] * LIMITED_RPM + [429] * OVER_LIMIT
    logged(metrics_gateway, answers)
    after = scrape(metrics_gateway)

    assert moved(before, after, "switchyard_rate_limited_total") == {
        labels(key=LIMITED_KEY_NAME): OVER_LIMIT}
    assert moved(before, after, "switchyard_requests_total") == {
        labels(model=M_MOCK, provider=MOCK, status="200"): LIMITED_RPM,
        labels(model=M_MOCK, provider="none", status="429"): OVER_LIMIT,
    }


# --------------------------------------------------------------------------------------
# 9. Access log and overhead header
# --------------------------------------------------------------------------------------

def metric_labels(line: dict, configured: set[str]) -> frozenset:
    """The requests_total labels the metrics should give the request of `line`."""
    model = line["model"] if line["model"] in configured else "unknown"
    return labels(model=model, provider=line["provider"] or "none", status=str(line["status"]))


def test_one_log_line_per_request_agreeing_with_the_metrics(app, metrics_gateway):
    """Success, stream, 404, 401 and 502: one JSON line each with the fixed keys, its
    status the metric's; `x-switchyard-overhead-ms` on every answer, at most the
    request's duration."""
    wrong_key = make_client(metrics_gateway, "sk-sy-e2e-wrong-" + secrets.token_hex(12))
    before = scrape(metrics_gateway)
    try:
        answers = [chat(app, M_CHAT), chat(app, M_CHAT, stream=True),
                   chat(app, "mx-nope"), chat(wrong_key, M_CHAT),
                   chat(app, M_UPSTREAM_401)]
    finally:
        wrong_key.close()
    assert statuses(answers) == [200, 200, 404, 401, 502]
    lines = logged(metrics_gateway, answers)
    after = scrape(metrics_gateway)

    for answer, line in zip(answers, lines):
        assert set(line) == ACCESS_LOG_KEYS, line
        assert line["status"] == answer.status, line
        overhead_ms = float(answer.headers["x-switchyard-overhead-ms"])
        assert 0 <= overhead_ms <= line["duration_ms"], (overhead_ms, line)
    request_ids = Counter(json.loads(raw)["request_id"] for raw in metrics_gateway.stdout_lines())
    assert all(request_ids[a.request_id] == 1 for a in answers), request_ids
    configured = set(metrics_gateway.config["models"])
    assert moved(before, after, "switchyard_requests_total") == Counter(
        metric_labels(line, configured) for line in lines)


# --------------------------------------------------------------------------------------
# 10. Access log disabled
# --------------------------------------------------------------------------------------

QUIET_REQUESTS = 3


def quiet_gateway_config(workdir: Path) -> dict:
    """The mock behind one model, with the access log switched off."""
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "keys": [{"name": "mx-app", "key": APP_KEY}],
        "providers": {MOCK: {"type": "mock"}},
        "models": {M_MOCK: {"targets": [{"provider": MOCK, "model": "mock-chat-1"}]}},
        "access_log": {"enabled": False},
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
    }


def test_disabled_access_log_writes_nothing_but_metrics_still_count(start_gateway,
                                                                     tmp_path_factory):
    """`access_log: {enabled: false}`: requests are counted, and stdout is still
    empty once the gateway has exited (so nothing was left to be written)."""
    gateway = start_on_free_ports(start_gateway, tmp_path_factory, quiet_gateway_config)
    client = make_client(gateway, APP_KEY)
    try:
        answers = chats(client, M_MOCK, QUIET_REQUESTS - 1) + [chat(client, "mx-nope")]
    finally:
        client.close()
    assert statuses(answers) == [200] * (QUIET_REQUESTS - 1) + [404]
    wait_for_metric(gateway, ("switchyard_requests_total",
                              labels(model="unknown", provider="none", status="404")), 1)
    after = scrape(gateway)
    assert after[("switchyard_requests_total",
                  labels(model=M_MOCK, provider=MOCK, status="200"))] == QUIET_REQUESTS - 1
    gateway.stop()
    assert gateway.stdout_lines() == []


# --------------------------------------------------------------------------------------
# 11. Trace context
# --------------------------------------------------------------------------------------

TRACE_HEADERS = {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}


def one_upstream_request(fake, answer: Answer):
    """The one request `fake` received for `answer`, found by the response's
    x-request-id (which the gateway sends upstream too)."""
    response_id = answer.headers["x-request-id"]
    assert response_id == answer.request_id
    (upstream,) = fake.by_request_id(response_id)
    return upstream


def test_trace_context_reaches_openai_unchanged(app, fake_upstream):
    """`traceparent` and `tracestate` arrive upstream byte for byte, once each, with
    the response's x-request-id; without them, none is invented."""
    traced = chat(app, M_CHAT, headers=TRACE_HEADERS)
    untraced = chat(app, M_CHAT)
    assert statuses([traced, untraced]) == [200, 200]

    upstream = one_upstream_request(fake_upstream, traced)
    assert upstream.headers.get("traceparent") == [TRACEPARENT]
    assert upstream.headers.get("tracestate") == [TRACESTATE]
    bare = one_upstream_request(fake_upstream, untraced)
    assert "traceparent" not in bare.headers and "tracestate" not in bare.headers


def test_trace_context_reaches_bedrock_and_the_signature_holds(app, fake_bedrock):
    """The same headers reach Bedrock, and its SigV4 signature still verifies."""
    answer = chat(app, M_BEDROCK, headers=TRACE_HEADERS)
    assert answer.status == 200, answer
    upstream = one_upstream_request(fake_bedrock, answer)
    assert upstream.auth_problem is None, upstream.auth_problem
    assert upstream.headers.get("traceparent") == [TRACEPARENT]
    assert upstream.headers.get("tracestate") == [TRACESTATE]


# --------------------------------------------------------------------------------------
# 12. Request ids in error messages
# --------------------------------------------------------------------------------------

ERROR_CASES = {"local-404": ("mx-nope", 404), "upstream-502": (M_UPSTREAM_401, 502)}


@pytest.mark.parametrize("client_id", ["valid", "invalid"])
@pytest.mark.parametrize("case", ERROR_CASES)
def test_error_message_names_the_request_id(case, client_id, app):
    """The envelope's message ends with `(request id: <x-request-id>)`: the client's
    id when valid, a generated one when not (never a 400)."""
    model, status = ERROR_CASES[case]
    sent = new_request_id("mx-err") if client_id == "valid" else INVALID_REQUEST_ID
    answer = chat(app, model, request_id=sent)
    assert answer.status == status
    response_id = answer.headers["x-request-id"]
    if client_id == "valid":
        assert response_id == sent
    else:
        assert response_id != sent and REQUEST_ID.match(response_id), response_id
    message = answer.error["message"]
    assert message.endswith(f" (request id: {response_id})"), message
