"""No secret ever leaves the gateway: not in a response, a log line, a metric or an
error message (DESIGN.md §2, "Access log").

Known secrets are configured — two virtual keys, OpenAI keys (a good one and a
revoked one), an Azure key read from `api_key_file`, AWS credentials (the session
token through `${VAR}` expansion), a wrong AWS secret, a Bedrock API key — and a
client presents a wrong key of its own. A scenario then touches every path: success
(JSON and SSE) on each provider and on both API shapes, every error class of the
errors table, failover, and the admin endpoints. Upstream fakes provoke the
dangerous answers: OpenAI's 401 quoting the key it was given, and Bedrock's
signature mismatch quoting the canonical request, session token included.

Everything the gateway emitted — each response's status line, headers and body,
its stdout (access log) and stderr, `/metrics`, and what `switchyard -t` and a
SIGHUP reload of a running gateway say about broken configs — is scanned for any
8-character piece of each secret. So are the requests each fake upstream received,
for every secret that upstream has no business seeing (virtual keys are never
forwarded; an AWS secret access key is never sent at all).

The scan cannot pass vacuously: every response must have the status and error code
its scenario step expects, together covering the errors table, and the fakes must
have received (and, where they check, accepted) the provider credentials.

Secrets are base64url (`secrets.token_urlsafe`) behind a short tag, so a piece of
one cannot turn up by chance in hex request ids or digests. Failure messages name a
secret by its tag and show the context with the secret replaced by <REDACTED>;
`Secret.__repr__` hides the value, so pytest's own output cannot print one either.
"""

from __future__ import annotations

import http.client
import json
import secrets
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import openai
import pytest

from conftest import (
    AZ_DEP_CHAT,
    AZ_UNAUTHORIZED_MESSAGE,
    AZURE_API_VERSION,
    BEDROCK_ACCESS_KEY_ID,
    BEDROCK_MODEL_ID,
    BEDROCK_REGION,
    ROUTING,
    UP_CHAT,
    UP_CUT_AFTER_CONTENT,
    UP_EMBED,
    UP_HANG,
    UP_RATE_LIMITED,
    UP_SERVER_ERROR,
    FakeAzureHandler,
    FakeAzureServer,
    FakeBedrockServer,
    FakeOpenAIHandler,
    FakeOpenAIServer,
    Gateway,
    RecordingServer,
    azure_recordings,
    bedrock_credentials,
    free_port,
    gateway_binary,
    make_azure_client,
    make_client,
    pingora_settings,
    serving,
    start_on_free_ports,
)

WINDOW = 8  # the shortest piece of a secret that counts as leaking it
CONTEXT = 60  # characters shown either side of a leak
MAX_REQUEST_BYTES = 65536
CHECK_TIMEOUT_S = 30  # `switchyard -t` runs in well under a second


# --------------------------------------------------------------------------------------
# The secrets
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Secret:
    """A secret value and the tag failure messages name it by."""

    tag: str
    value: str

    def __repr__(self) -> str:
        return f"Secret({self.tag})"  # never the value, whatever pytest prints


def new_secret(tag: str, prefix: str, size: int = 30) -> Secret:
    return Secret(tag, prefix + secrets.token_urlsafe(size))


VK_APP = new_secret("virtual key `app`", "sk-vkapp-")
VK_LIMITED = new_secret("virtual key `limited`", "sk-vklim-")
VK_WRONG = new_secret("wrong key presented by the client", "sk-vkbad-")
OPENAI_KEY = new_secret("OpenAI api_key", "sk-oai-")
OPENAI_REVOKED_KEY = new_secret("revoked OpenAI api_key", "sk-oairev-")
AZURE_KEY = new_secret("Azure api_key (api_key_file)", "azk-")
AWS_SECRET = new_secret("AWS secret_access_key", "awssak-")
AWS_WRONG_SECRET = new_secret("wrong AWS secret_access_key", "awsbad-")
AWS_SESSION_TOKEN = new_secret("AWS session_token (${VAR})", "awstok-", 120)
BEDROCK_API_KEY = new_secret("Bedrock API key", "absk-")
# Only in the config-fault cases: a generated secret that happens to contain `${`.
VK_WITH_DOLLAR = Secret("virtual key containing `${`",
                        "sk-vkdol-" + secrets.token_urlsafe(15) + "${" + secrets.token_urlsafe(15))
ALL_SECRETS = (VK_APP, VK_LIMITED, VK_WRONG, OPENAI_KEY, OPENAI_REVOKED_KEY, AZURE_KEY,
               AWS_SECRET, AWS_WRONG_SECRET, AWS_SESSION_TOKEN, BEDROCK_API_KEY, VK_WITH_DOLLAR)
SESSION_TOKEN_VAR = "SY_LEAK_TEST_SESSION_TOKEN"


# --------------------------------------------------------------------------------------
# The scan
# --------------------------------------------------------------------------------------

def pieces(secret: Secret) -> list[str]:
    return [secret.value[i:i + WINDOW] for i in range(len(secret.value) - WINDOW + 1)]


def covered(text: str, among: tuple[Secret, ...]) -> list[bool]:
    """For each character of `text`, whether a piece of one of `among` covers it."""
    mask = [False] * len(text)
    for secret in among:
        for piece in pieces(secret):
            at = text.find(piece)
            while at >= 0:
                mask[at:at + WINDOW] = [True] * WINDOW
                at = text.find(piece, at + 1)
    return mask


def render(text: str, mask: list[bool], start: int = 0, end: int | None = None) -> str:
    """`text[start:end]` with each run of masked characters shown as <REDACTED>."""
    out: list[str] = []
    for i in range(max(0, start), len(text) if end is None else min(end, len(text))):
        if not mask[i]:
            out.append(text[i])
        elif not out or out[-1] != "<REDACTED>":
            out.append("<REDACTED>")
    return "".join(out)


def redact(text: str) -> str:
    return render(text, covered(text, ALL_SECRETS))


def leaks(sources: dict[str, str], among: tuple[Secret, ...]) -> list[str]:
    """One line per (source, secret) where a piece of the secret occurs: the tag,
    the source and the first occurrence in context, every secret redacted (the mask
    is taken on the whole text, so no fragment survives at the cut)."""
    found = []
    for source, text in sources.items():
        mask = None
        for secret in among:
            hits = [at for at in (text.find(piece) for piece in pieces(secret)) if at >= 0]
            if not hits:
                continue
            if mask is None:
                mask = covered(text, ALL_SECRETS)
            start = end = min(hits)
            while end < len(text) and mask[end]:
                end += 1
            context = render(text, mask, start - CONTEXT, end + CONTEXT)
            found.append(f"{secret.tag} leaked in {source}: ...{context!r}...")
    return found


def assert_no_leaks(sources: dict[str, str], among: tuple[Secret, ...] = ALL_SECRETS) -> None:
    found = leaks(sources, among)
    if found:
        pytest.fail(f"{len(found)} leak(s):\n" + "\n".join(found), pytrace=False)


def test_the_scan_finds_a_masked_quote_and_reports_it_redacted():
    """The scan itself: a partly masked quote, as providers write them, is found by
    its 8-character pieces (7 are not enough), and the report names the secret's tag
    but holds no piece of any secret."""
    key = OPENAI_KEY.value
    found = leaks({"a fake 401": f"Incorrect API key provided: {key[:8]}***{key[-8:]}."},
                  (OPENAI_KEY,))
    assert len(found) == 1 and found[0].startswith(f"{OPENAI_KEY.tag} leaked in a fake 401")
    assert "provided: <REDACTED>***<REDACTED>." in found[0]
    assert not leaks({"the report": found[0]}, ALL_SECRETS)
    assert not leaks({"7 characters": f"{key[:7]} {key[-7:]}"}, (OPENAI_KEY,))


# --------------------------------------------------------------------------------------
# What the gateway sent back
# --------------------------------------------------------------------------------------

Outcome = tuple[int, "str | None"]  # (HTTP status, error code or None)
OK: Outcome = (200, None)


def error_code(body: bytes) -> str | None:
    """The `error.code` of an error envelope, or of a stream's error event; None for
    an answer."""
    text = body.decode("utf-8", "replace")
    for candidate in [text] + [line[len("data: "):] for line in text.splitlines()
                               if line.startswith("data: ")]:
        try:
            doc = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return doc["error"].get("code")
    return None


def streamed(manager: Any) -> Any:
    """Opens an SDK `with_streaming_response` call and reads its raw body whole."""
    with manager as response:
        response.read()
    return response


class Capture:
    """Everything the gateway emitted, by source: each response (status line,
    headers, body) under the label of its scenario step, with the outcome the step
    expected and the one it got; and other texts (logs)."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.expected: dict[str, Outcome] = {}
        self.seen: dict[str, Outcome] = {}

    def response(self, label: str, expected: Outcome, status: int, status_line: str,
                  headers: list[tuple[str, str]], body: bytes) -> dict[str, str]:
        """Records one response; returns its headers (lower-case names)."""
        assert label not in self.seen, f"two scenario steps are labelled {label!r}"
        self.expected[label] = expected
        self.seen[label] = (status, error_code(body))
        self.texts[f"response to {label!r}"] = "\n".join(
            [status_line] + [f"{n}: {v}" for n, v in headers]) + "\n\n" + body.decode(
                "utf-8", "replace")
        return {n.lower(): v for n, v in headers}

    def sdk(self, label: str, expected: Outcome, call: Callable[[], Any]) -> dict[str, str]:
        """An SDK call made `with_raw_response` (or `streamed`); an error status is
        recorded from the SDK's exception."""
        try:
            r = call().http_response
        except openai.APIStatusError as e:
            r = e.response
        return self.response(label, expected, r.status_code,
                             f"{r.http_version} {r.status_code} {r.reason_phrase}",
                             r.headers.multi_items(), r.content)

    def http(self, label: str, expected: Outcome, url: str, method: str = "GET",
             body: bytes | None = None, headers: dict[str, str] | None = None) -> dict[str, str]:
        """A request the SDK cannot make (no key, a malformed body, a wrong method)."""
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                         body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        return self.response(label, expected, r.status,
                             f"HTTP/{r.version // 10}.{r.version % 10} {r.status} {r.reason}",
                             r.getheaders(), data)


# --------------------------------------------------------------------------------------
# Upstream fakes that know our secrets
# --------------------------------------------------------------------------------------

class KeyedOpenAIHandler(FakeOpenAIHandler):
    """The fake OpenAI upstream with OpenAI's authentication: a request without
    `Authorization: Bearer <server.api_key>` gets OpenAI's 401, which quotes the key
    it was given (OpenAI masks the middle; quoting it whole is the harder test)."""

    server: "KeyedOpenAIServer"

    def do_POST(self) -> None:  # noqa: N802
        presented = self.headers.get("authorization") or ""
        if presented == f"Bearer {self.server.api_key}":
            super().do_POST()
            return
        self._record("POST", self._read_body())
        self._send_json(401, {"error": {
            "message": f"Incorrect API key provided: {presented.removeprefix('Bearer ')}. "
                       "You can find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})


class KeyedOpenAIServer(FakeOpenAIServer):
    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.RequestHandlerClass = KeyedOpenAIHandler
        self.api_key = api_key


class KeyedAzureHandler(FakeAzureHandler):
    """The fake Azure resource for a key of ours (conftest's knows only its own):
    401 to any other `api-key`, else the recorded answer or stream of AZ_DEP_CHAT."""

    server: "KeyedAzureServer"

    def do_POST(self) -> None:  # noqa: N802
        rec = self._record("POST", self._read_body())
        if rec.header("api-key") != self.server.api_key:
            self._error(401, "401", AZ_UNAUTHORIZED_MESSAGE)
        elif (self.server.route(rec) != (AZ_DEP_CHAT, "chat/completions")
              or rec.query_values("api-version") != [AZURE_API_VERSION]):
            self._error(404, "404", "Resource not found")
        elif (rec.json or {}).get("stream"):
            self._recorded_stream(rec.json)
        else:
            self._send_body(200, azure_recordings().chat_body)


class KeyedAzureServer(FakeAzureServer):
    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.RequestHandlerClass = KeyedAzureHandler
        self.api_key = api_key


@dataclass
class Upstreams:
    openai: KeyedOpenAIServer      # accepts OPENAI_KEY (so OPENAI_REVOKED_KEY gets a 401)
    azure: KeyedAzureServer
    sigv4: FakeBedrockServer       # AWS_SECRET + AWS_SESSION_TOKEN
    apikey: FakeBedrockServer      # BEDROCK_API_KEY
    refused_port: int              # bound, never listening: connections are refused

    def fakes(self) -> dict[str, tuple[RecordingServer, tuple[Secret, ...]]]:
        """Each fake, with the secrets it may legitimately receive."""
        return {"the fake OpenAI upstream": (self.openai, (OPENAI_KEY, OPENAI_REVOKED_KEY)),
                "the fake Azure resource": (self.azure, (AZURE_KEY,)),
                "the fake Bedrock (SigV4)": (self.sigv4, (AWS_SESSION_TOKEN,)),
                "the fake Bedrock (API key)": (self.apikey, (BEDROCK_API_KEY,))}


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    with (serving(KeyedOpenAIServer(OPENAI_KEY.value)) as openai_fake,
          serving(KeyedAzureServer(AZURE_KEY.value)) as azure_fake,
          serving(FakeBedrockServer(credentials=bedrock_credentials(
              AWS_SECRET.value, token=AWS_SESSION_TOKEN.value))) as sigv4_fake,
          serving(FakeBedrockServer(api_key=BEDROCK_API_KEY.value)) as apikey_fake,
          socket.socket(socket.AF_INET, socket.SOCK_STREAM) as refused):
        refused.bind(("127.0.0.1", 0))
        yield Upstreams(openai_fake, azure_fake, sigv4_fake, apikey_fake,
                        refused.getsockname()[1])


# --------------------------------------------------------------------------------------
# The gateway
# --------------------------------------------------------------------------------------

def leak_gateway_config(up: Upstreams, azure_key_file: Path, workdir: Path) -> dict:
    """Every secret configured; one public model per path the scenario takes."""
    def bedrock(origin: str, **auth: str) -> dict:
        return {"type": "bedrock", "region": BEDROCK_REGION, "endpoint": origin, **auth}

    def one(provider: str, model: str, **extra: Any) -> dict:
        return {"targets": [{"provider": provider, "model": model}], **extra}

    def failover(first: dict, then: dict) -> dict:
        return {"targets": [dict(first, priority=1), dict(then, priority=2)]}

    sts = {"access_key_id": BEDROCK_ACCESS_KEY_ID, "session_token": f"${{{SESSION_TOKEN_VAR}}}"}
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "max_request_bytes": MAX_REQUEST_BYTES,
        "keys": [
            {"name": "app", "key": VK_APP.value},
            {"name": "limited", "key": VK_LIMITED.value, "models": ["chat"],
             "rate_limit": {"requests_per_minute": 1}},
        ],
        "providers": {
            "openai": {"type": "openai", "base_url": up.openai.base_url,
                       "api_key": OPENAI_KEY.value},
            "openai-revoked": {"type": "openai", "base_url": up.openai.base_url,
                               "api_key": OPENAI_REVOKED_KEY.value},
            "refused": {"type": "openai", "base_url": f"http://127.0.0.1:{up.refused_port}/v1",
                        "api_key": OPENAI_KEY.value},
            "azure": {"type": "azure", "endpoint": up.azure.origin,
                      "api_key_file": str(azure_key_file), "api_version": AZURE_API_VERSION},
            "bedrock-sigv4": bedrock(up.sigv4.origin, secret_access_key=AWS_SECRET.value, **sts),
            "bedrock-badsig": bedrock(up.sigv4.origin, secret_access_key=AWS_WRONG_SECRET.value,
                                      **sts),
            "bedrock-apikey": bedrock(up.apikey.origin, api_key=BEDROCK_API_KEY.value),
        },
        "models": {
            "chat": one("openai", UP_CHAT),
            "embed": one("openai", UP_EMBED),
            "chat-5xx": one("openai", UP_SERVER_ERROR),
            "chat-429": one("openai", f"{UP_RATE_LIMITED}300"),
            "chat-retired": one("openai", "fake-retired-model"),  # the fake answers 404
            "chat-revoked": one("openai-revoked", UP_CHAT),
            "chat-hang": one("openai", UP_HANG, timeouts={"first_byte": "300ms"}),
            "chat-cut": one("openai", UP_CUT_AFTER_CONTENT),
            "chat-failover-refused": failover(
                {"provider": "refused", "model": UP_CHAT},
                {"provider": "openai", "model": UP_CHAT}),
            "chat-failover-5xx": failover(
                # A target id of its own: chat-5xx's failures do not count toward its circuit.
                {"provider": "openai", "model": UP_SERVER_ERROR, "name": "failover-5xx"},
                {"provider": "azure", "deployment": AZ_DEP_CHAT}),
            "az-chat": {"targets": [{"provider": "azure", "deployment": AZ_DEP_CHAT}]},
            "br-sigv4": one("bedrock-sigv4", BEDROCK_MODEL_ID),
            "br-apikey": one("bedrock-apikey", BEDROCK_MODEL_ID),
            "br-badsig": one("bedrock-badsig", BEDROCK_MODEL_ID),
        },
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
    }


@pytest.fixture
def leak_gateway(start_gateway, upstreams, tmp_path, tmp_path_factory, monkeypatch) -> Gateway:
    # trace, not the suite's info: the scan covers what an operator sees while
    # diagnosing, even at the most verbose level (the gateway drops the trace
    # records in which Pingora dumps raw request headers).
    monkeypatch.setenv("RUST_LOG", "trace")
    monkeypatch.setenv(SESSION_TOKEN_VAR, AWS_SESSION_TOKEN.value)
    azure_key_file = tmp_path / "azure.key"
    azure_key_file.write_text(AZURE_KEY.value + "\n")
    return start_on_free_ports(start_gateway, tmp_path_factory, lambda workdir: (
        leak_gateway_config(upstreams, azure_key_file, workdir)))


# --------------------------------------------------------------------------------------
# The scenario, one group of paths at a time
# --------------------------------------------------------------------------------------

CHAT = [{"role": "user", "content": "Which city is the capital of Denmark?"}]
JSON = {"content-type": "application/json"}
CHAT_BODY = json.dumps({"model": "chat", "messages": CHAT}).encode()


def chat(capture: Capture, client: openai.OpenAI, label: str, expected: Outcome, model: str,
         stream: bool = False) -> dict[str, str]:
    """One chat completion through the SDK; a stream's SSE body is read whole."""
    completions = client.chat.completions
    if stream:
        return capture.sdk(label, expected, lambda: streamed(
            completions.with_streaming_response.create(model=model, messages=CHAT, stream=True)))
    return capture.sdk(label, expected,
                       lambda: completions.with_raw_response.create(model=model, messages=CHAT))


def exercise_openai(capture: Capture, gw: Gateway) -> None:
    """Success on the OpenAI provider, and every way an upstream can fail."""
    with make_client(gw, VK_APP.value) as app:
        chat(capture, app, "OpenAI chat", OK, "chat")
        chat(capture, app, "OpenAI chat stream", OK, "chat", stream=True)
        capture.sdk("OpenAI embeddings", OK,
                    lambda: app.embeddings.with_raw_response.create(model="embed", input="hi"))
        capture.sdk("GET /v1/models", OK, lambda: app.models.with_raw_response.list())
        capture.sdk("GET /v1/models/chat", OK,
                    lambda: app.models.with_raw_response.retrieve("chat"))
        chat(capture, app, "upstream 500", (502, "upstream_error"), "chat-5xx")
        chat(capture, app, "upstream 429", (429, "rate_limit_exceeded"), "chat-429")
        chat(capture, app, "upstream 404 for the configured model",
             (502, "upstream_model_not_found"), "chat-retired")
        for stream in (False, True):
            chat(capture, app, f"upstream 401 quoting the revoked key (stream={stream})",
                 (502, "upstream_auth_failed"), "chat-revoked", stream)
        chat(capture, app, "no first byte within 300ms", (504, "upstream_timeout"), "chat-hang")
        chat(capture, app, "stream cut after content", (200, "upstream_error"), "chat-cut",
             stream=True)
        for label, model, stream, provider in (
                ("failover from a refused connection", "chat-failover-refused", False, "openai"),
                ("failover from a 500 to Azure, stream", "chat-failover-5xx", True, "azure")):
            headers = chat(capture, app, label, OK, model, stream)
            assert (headers.get("x-switchyard-attempts"),
                    headers.get("x-switchyard-provider")) == ("2", provider), label


def exercise_azure(capture: Capture, gw: Gateway) -> None:
    """Azure behind the OpenAI-style path and the Azure-style path (`AzureOpenAI`
    SDK: the virtual key in `api-key`, or as a Bearer token)."""
    with (make_client(gw, VK_APP.value) as app,
          make_azure_client(gw, VK_APP.value) as azure,
          make_azure_client(gw, VK_APP.value, bearer=True) as azure_bearer):
        for stream in (False, True):
            chat(capture, app, f"Azure via /v1 (stream={stream})", OK, "az-chat", stream)
            chat(capture, azure, f"Azure path, api-key (stream={stream})", OK, "az-chat", stream)
        chat(capture, azure_bearer, "Azure path, Bearer", OK, "az-chat")


def exercise_bedrock(capture: Capture, gw: Gateway) -> None:
    """Bedrock with SigV4 (session token) and with an API key; and a provider whose
    secret is wrong, so the fake's InvalidSignatureException quotes the canonical
    request (session token included)."""
    with make_client(gw, VK_APP.value) as app:
        for stream in (False, True):
            chat(capture, app, f"Bedrock SigV4 (stream={stream})", OK, "br-sigv4", stream)
            chat(capture, app, f"Bedrock API key (stream={stream})", OK, "br-apikey", stream)
            chat(capture, app, f"Bedrock signature mismatch (stream={stream})",
                 (502, "upstream_auth_failed"), "br-badsig", stream)


def exercise_client_errors(capture: Capture, gw: Gateway) -> None:
    """The client's mistakes: 400, 401 (no key, wrong keys, a key without its
    scheme), 404, 405, 413."""
    url = gw.origin + "/v1/chat/completions"
    bearer = {"authorization": f"Bearer {VK_APP.value}", **JSON}
    capture.http("invalid JSON", (400, "invalid_json"), url, "POST",
                 b'{"model": "chat", "messages": [', bearer)
    capture.http("missing messages", (400, "missing_field"), url, "POST",
                 json.dumps({"model": "chat"}).encode(), bearer)
    capture.http("Azure path without api-version", (400, "missing_field"),
                 gw.origin + "/openai/deployments/az-chat/chat/completions", "POST", CHAT_BODY,
                 {"api-key": VK_APP.value, **JSON})
    capture.http("no key", (401, "invalid_api_key"), url, "POST", CHAT_BODY, JSON)
    capture.http("the app's key without the Bearer scheme", (401, "invalid_api_key"), url,
                 "POST", CHAT_BODY, {"authorization": VK_APP.value, **JSON})
    with (make_client(gw, VK_WRONG.value) as wrong,
          make_azure_client(gw, VK_WRONG.value) as wrong_azure,
          make_client(gw, VK_APP.value) as app):
        chat(capture, wrong, "wrong key as Bearer", (401, "invalid_api_key"), "chat")
        chat(capture, wrong_azure, "wrong key as api-key", (401, "invalid_api_key"), "az-chat")
        chat(capture, app, "unknown model", (404, "model_not_found"), "no-such-model")
        capture.sdk("body over max_request_bytes", (413, "request_too_large"),
                    lambda: app.chat.completions.with_raw_response.create(
                        model="chat",
                        messages=[{"role": "user", "content": "x" * MAX_REQUEST_BYTES}]))
    capture.http("unknown path", (404, "not_found"), gw.origin + "/v1/no/such/path", "GET",
                 None, bearer)
    capture.http("GET on chat completions", (405, "method_not_allowed"), url, "GET", None, bearer)


def exercise_limits(capture: Capture, gw: Gateway) -> None:
    """The `limited` key (models: [chat], 1 request a minute): one answer, a model
    outside its allow-list (refused before the limit, so it spends nothing), then
    its own limit."""
    with make_client(gw, VK_LIMITED.value) as limited:
        chat(capture, limited, "limited key", OK, "chat")
        chat(capture, limited, "limited key, model not allowed", (403, "model_not_allowed"),
             "az-chat")
        chat(capture, limited, "limited key over its limit", (429, "rate_limit_exceeded"), "chat")


def exercise_admin(capture: Capture, gw: Gateway) -> None:
    """The admin listener; last, so /metrics counts every request above."""
    for path in ("/healthz", "/readyz", "/metrics"):
        capture.http(f"admin {path}", OK, gw.admin_url + path)


# Every class of DESIGN.md's errors table the scenario reaches (503 `shutting_down`
# needs a drain and is not exercised), plus answers and a stream's error event.
COVERED = {
    OK, (200, "upstream_error"),
    (400, "invalid_json"), (400, "missing_field"), (401, "invalid_api_key"),
    (403, "model_not_allowed"), (404, "model_not_found"), (404, "not_found"),
    (405, "method_not_allowed"), (413, "request_too_large"), (429, "rate_limit_exceeded"),
    (502, "upstream_error"), (502, "upstream_auth_failed"), (502, "upstream_model_not_found"),
    (504, "upstream_timeout"),
}


def assert_fakes_got_the_credentials(up: Upstreams) -> None:
    """The provider secrets were really in play: each fake received them (and
    accepted them where it checks). No secret is printed on failure."""
    def posts(server: RecordingServer) -> list:
        return [r for r in server.received() if r.method == "POST"]

    openai_auth = {r.header("authorization") for r in posts(up.openai)}
    if openai_auth != {f"Bearer {OPENAI_KEY.value}", f"Bearer {OPENAI_REVOKED_KEY.value}"}:
        pytest.fail("the fake OpenAI upstream did not get exactly the two OpenAI keys")
    if {r.header("api-key") for r in posts(up.azure)} != {AZURE_KEY.value}:
        pytest.fail("the fake Azure resource did not get the key of api_key_file")
    sigv4 = posts(up.sigv4)
    if any(r.headers.get("x-amz-security-token") != [AWS_SESSION_TOKEN.value] for r in sigv4):
        pytest.fail("a SigV4 request did not carry the session token")
    verdicts = {(r.auth_problem or "accepted").split(":")[0] for r in sigv4}
    assert verdicts == {"accepted", "InvalidSignatureException"}, verdicts
    apikey = posts(up.apikey)
    if not apikey or any(r.auth_problem for r in apikey):
        pytest.fail("the fake Bedrock did not accept the Bedrock API key")


def test_no_secret_in_responses_logs_or_metrics(leak_gateway, upstreams):
    gw = leak_gateway
    capture = Capture()
    exercise_openai(capture, gw)
    exercise_azure(capture, gw)
    exercise_bedrock(capture, gw)
    exercise_client_errors(capture, gw)
    exercise_limits(capture, gw)
    exercise_admin(capture, gw)
    gw.stop()  # flushes stdout and stderr
    access_log = gw.stdout_lines()
    capture.texts["gateway stdout (access log)"] = "\n".join(access_log)
    capture.texts["gateway stderr"] = gw.stderr_text()

    assert_no_leaks(capture.texts)
    for fake, (server, allowed) in upstreams.fakes().items():
        assert_no_leaks({f"requests received by {fake}": "\n\n".join(
            r.raw_text() for r in server.received())},
            tuple(s for s in ALL_SECRETS if s not in allowed))

    # Not vacuous: each step got what it provoked, the table is covered, every API
    # request was logged, and the provider secrets reached the fakes.
    assert capture.seen == capture.expected
    assert set(capture.seen.values()) == COVERED
    api_requests = [label for label in capture.seen if not label.startswith("admin ")]
    assert len(gw.access_log()) == len(api_requests), access_log[-5:]
    assert capture.texts["gateway stderr"].strip(), "nothing on stderr: is it captured?"
    assert_fakes_got_the_credentials(upstreams)


# --------------------------------------------------------------------------------------
# Config errors: neither `switchyard -t` nor a rejected reload may quote a secret
# --------------------------------------------------------------------------------------

def yaml_str(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is YAML's)."""
    return json.dumps(value)


def config_text(keys: str, providers: str) -> str:
    return (f"listen: 127.0.0.1:18080\nadmin_listen: 127.0.0.1:19090\n"
            f"keys:\n{keys}providers:\n{providers}"
            f"models:\n  chat:\n    targets:\n      - {{ provider: openai, model: {UP_CHAT} }}\n")


def app_key(secret: Secret = VK_APP) -> str:
    return f"  - name: app\n    key: {yaml_str(secret.value)}\n"


def openai_provider(extra: str = "") -> str:
    return ("  openai:\n    type: openai\n    base_url: http://127.0.0.1:1/v1\n"
            f"    api_key: {yaml_str(OPENAI_KEY.value)}\n{extra}")


def bedrock_provider(endpoint: str) -> str:
    """AWS credentials first, the endpoint after them."""
    return ("  bedrock:\n    type: bedrock\n    region: us-east-1\n"
            f"    access_key_id: {BEDROCK_ACCESS_KEY_ID}\n"
            f"    secret_access_key: {yaml_str(AWS_SECRET.value)}\n"
            f"    session_token: {yaml_str(AWS_SESSION_TOKEN.value)}\n"
            f"    endpoint: {endpoint}\n")


VALID = "valid config"
# name -> config text, given the path of a file holding AZURE_KEY.
CONFIG_CASES: dict[str, Callable[[Path], str]] = {
    VALID: lambda key_file: config_text(
        app_key() + f"  - {{ name: limited, key: {yaml_str(VK_LIMITED.value)} }}\n",
        openai_provider() + bedrock_provider("http://127.0.0.1:1")
        + "  azure: { type: azure, endpoint: http://127.0.0.1:1, "
          f"api_version: {yaml_str(AZURE_API_VERSION)}, "
          f"api_key_file: {yaml_str(str(key_file))} }}\n"),
    "bad duration after an api_key": lambda _: config_text(
        app_key(), openai_provider("    health_check: { interval: soonish }\n")),
    "bad duration on the api_key's line": lambda _: config_text(
        app_key(), f"  openai: {{ type: openai, base_url: http://127.0.0.1:1/v1, "
                   f"api_key: {yaml_str(OPENAI_KEY.value)}, "
                   "health_check: { interval: soonish } }\n"),
    "unknown field on a virtual key's line": lambda _: config_text(
        f"  - {{ name: app, key: {yaml_str(VK_APP.value)}, modles: [chat] }}\n",
        openai_provider()),
    "bad endpoint after AWS credentials": lambda _: config_text(
        app_key(), openai_provider() + bedrock_provider("ftp://127.0.0.1:1")),
    "virtual key written as a mapping": lambda _: config_text(
        f"  - name: app\n    key: {{ value: {yaml_str(VK_APP.value)} }}\n", openai_provider()),
    "one secret used by two virtual keys": lambda _: config_text(
        app_key() + f"  - name: other\n    key: {yaml_str(VK_APP.value)}\n", openai_provider()),
    "api_key and api_key_file both given": lambda key_file: config_text(
        app_key(), openai_provider(f"    api_key_file: {yaml_str(str(key_file))}\n")),
    # A generated secret may contain `${` (the config syntax escapes it as `$${`).
    "virtual key containing `${`": lambda _: config_text(app_key(VK_WITH_DOLLAR),
                                                         openai_provider()),
}


def check_with_t(config: Path) -> tuple[bool, str]:
    """`switchyard -t -c CONFIG`: (refused, stdout + stderr)."""
    done = subprocess.run([str(gateway_binary()), "-t", "-c", str(config)],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=CHECK_TIMEOUT_S)
    return done.returncode != 0, (done.stdout + done.stderr).decode("utf-8", "replace")


# A virtual key of the gateway the reload checker starts (no secret of the cases).
STARTER_KEY = "sk-starter-" + secrets.token_hex(16)
RELOAD_WAIT_S = 5.0  # a SIGHUP reload is applied at once


def starter_config(workdir: Path) -> dict:
    """A small valid config on free ports: the mock behind one model."""
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "admin_listen": f"127.0.0.1:{free_port()}",
        "keys": [{"name": "starter", "key": STARTER_KEY}],
        "providers": {"demo": {"type": "mock"}},
        "models": {"chat": {"targets": [{"provider": "demo", "model": "mock-chat-1"}]}},
        "routing": ROUTING,
        "pingora": pingora_settings(workdir),
    }


def check_with_reload(config: Path) -> tuple[bool, str]:
    """A running gateway gets CONFIG by reload: started (at trace level, like the
    leak gateway) on a valid config of its own kept at CONFIG's path, it has CONFIG's
    text written over that file and a SIGHUP; once
    switchyard_config_reloads_total{result=...} moved and its log line is out, it
    is stopped. (refused, its stdout + stderr)."""
    text = config.read_text()
    gateway = None
    for _ in range(3):  # free ports are picked before the process binds them
        gateway = Gateway(gateway_binary(), starter_config(config.parent), config.parent,
                          env={"RUST_LOG": "trace"})
        gateway.config_path = config
        try:
            gateway.start()
            break
        except RuntimeError:
            gateway.stop()
            gateway = None
    assert gateway is not None, "could not start the gateway for the reload checker"
    try:
        def counted() -> tuple[float | None, float | None]:
            return (gateway.metric("switchyard_config_reloads_total", result="success"),
                    gateway.metric("switchyard_config_reloads_total", result="error"))

        before = counted()
        gateway.write_config(text)
        gateway.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_WAIT_S
        while (after := counted()) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert after != before, "the reload was not counted"
        refused = after[1] != before[1]
        gateway.wait_stderr("config reload rejected" if refused else "config reloaded",
                            timeout=RELOAD_WAIT_S)
    finally:
        gateway.stop()
    return refused, "\n".join(gateway.stdout_lines()) + "\n" + gateway.stderr_text()


# How a config is checked -> its checker. Every case above runs through each.
CONFIG_CHECKERS: dict[str, Callable[[Path], tuple[bool, str]]] = {
    "switchyard -t": check_with_t, "SIGHUP reload": check_with_reload}


@pytest.mark.parametrize("checker", CONFIG_CHECKERS)
@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_errors_quote_no_secret(case, checker, tmp_path):
    key_file = tmp_path / "azure.key"
    key_file.write_text(AZURE_KEY.value + "\n")
    config = tmp_path / "switchyard.yaml"
    config.write_text(CONFIG_CASES[case](key_file))
    refused, output = CONFIG_CHECKERS[checker](config)

    assert_no_leaks({f"`{checker}` output on {case!r}": output})
    assert refused == (case != VALID), redact(output)
    assert str(config) in output, redact(output)  # the message names the file
