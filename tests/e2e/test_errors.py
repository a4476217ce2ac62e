"""Errors as the SDK sees them: status, exception class, OpenAI envelope, headers, log."""

import json
import secrets
import urllib.error
import urllib.request

import openai
import pytest

from conftest import (
    MAX_REQUEST_BYTES,
    PROVIDER_KEY,
    UP_BAD_REQUEST_MESSAGE,
    assert_no_secret,
    make_client,
    new_request_id,
    with_request_id,
)

CHAT = [{"role": "user", "content": "hello"}]


def envelope(exc: openai.APIStatusError) -> dict:
    """The full error envelope of the response, checked for its four keys."""
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_wrong_key_is_401_and_never_echoed(gateway):
    wrong = "sk-wrong-" + secrets.token_hex(16)
    bad_client = make_client(gateway, wrong)
    rid = new_request_id("wrong-key")
    with pytest.raises(openai.AuthenticationError) as e:
        bad_client.chat.completions.create(model="mock-chat", messages=CHAT,
                                           extra_headers={"x-request-id": rid})
    bad_client.close()
    exc = e.value
    assert exc.status_code == 401
    assert exc.code == "invalid_api_key"
    assert exc.type == "invalid_request_error"
    err = envelope(exc)
    assert wrong not in exc.message
    assert wrong not in exc.response.text
    assert wrong not in json.dumps(err)
    assert exc.response.headers["x-request-id"] == rid
    assert "x-switchyard-attempts" not in exc.response.headers  # no upstream involved
    assert float(exc.response.headers["x-switchyard-overhead-ms"]) >= 0  # on every response

    line = gateway.log_for(rid)
    assert line["status"] == 401
    assert line["key"] is None
    assert line["error"] == "invalid_api_key"
    assert line["attempts"] == 0
    assert wrong not in "\n".join(gateway.stdout_lines())
    assert wrong not in gateway.stderr_text()


def test_missing_authorization_header_is_401(gateway):
    # The SDK always sends a key; a misconfigured app or proxy might not.
    req = urllib.request.Request(
        gateway.base_url + "/chat/completions", method="POST",
        data=json.dumps({"model": "mock-chat", "messages": CHAT}).encode(),
        headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    body = json.loads(e.value.read())
    assert body["error"]["code"] == "invalid_api_key"
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_unknown_model_is_404_model_not_found(client, fake_upstream):
    rid = new_request_id("unknown-model")
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-nonexistent", messages=CHAT,
                                       extra_headers={"x-request-id": rid})
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"
    assert e.value.param == "model"
    assert envelope(e.value)["type"] == "invalid_request_error"
    assert fake_upstream.by_request_id(rid) == []


def test_missing_messages_is_400_missing_field(client):
    # The typed `create` insists on `messages`; the SDK's generic POST sends what an
    # app with a bug (or another client library) might send.
    with pytest.raises(openai.BadRequestError) as e:
        client.post("/chat/completions", body={"model": "mock-chat"}, cast_to=object)
    assert e.value.status_code == 400
    assert e.value.code == "missing_field"
    assert e.value.param == "messages"
    assert envelope(e.value)["type"] == "invalid_request_error"


def test_messages_of_wrong_type_is_400_invalid_type(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mock-chat", messages=[],
                                       extra_body={"messages": "not a list"})
    assert e.value.code == "invalid_type"
    assert e.value.param == "messages"


def test_missing_model_is_400_missing_field(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.post("/chat/completions", body={"messages": CHAT}, cast_to=object)
    assert e.value.code == "missing_field"
    assert e.value.param == "model"


def test_invalid_json_is_400_invalid_json(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.post("/chat/completions", content=b'{"model": "mock-chat", "messages": [',
                    cast_to=object,
                    options={"headers": {"content-type": "application/json"}})
    assert e.value.code == "invalid_json"
    assert envelope(e.value)["type"] == "invalid_request_error"


def test_body_over_max_request_bytes_is_413(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "x" * (MAX_REQUEST_BYTES + 1)}])
    assert e.value.status_code == 413
    assert e.value.code == "request_too_large"


def test_unknown_path_is_404_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.get("/no/such/path", cast_to=object)
    assert e.value.code == "not_found"


def test_model_outside_allow_list_is_403(restricted_client, fake_upstream, gateway):
    rid = new_request_id("not-allowed")
    with pytest.raises(openai.PermissionDeniedError) as e:
        restricted_client.chat.completions.create(model="gpt-4o", messages=CHAT,
                                                  extra_headers={"x-request-id": rid})
    assert e.value.status_code == 403
    assert e.value.code == "model_not_allowed"
    assert e.value.type == "permission_error"
    assert fake_upstream.by_request_id(rid) == [], "a refused request never reaches an upstream"
    line = gateway.log_for(rid)
    assert (line["status"], line["key"], line["error"]) == (403, "e2e-restricted", "model_not_allowed")
    # ...while the allowed models work with the same key.
    ok = restricted_client.chat.completions.create(model="mock-chat", messages=CHAT)
    assert ok.choices[0].message.content == "hello"


def test_upstream_400_passes_through_with_its_message(client, fake_upstream, gateway):
    rid = new_request_id("up-400")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-bad-request", messages=CHAT, temperature=5,
                                       extra_headers={"x-request-id": rid})
    exc = e.value
    assert exc.status_code == 400
    err = envelope(exc)
    assert err["message"] == with_request_id(UP_BAD_REQUEST_MESSAGE, rid)
    assert exc.code == "invalid_value"
    assert exc.param == "temperature"
    assert exc.response.headers["x-switchyard-provider"] == "fake-openai"
    assert exc.response.headers["x-switchyard-attempts"] == "1"
    assert len(fake_upstream.by_request_id(rid)) == 1, "a client error is not retried"
    line = gateway.log_for(rid)
    assert line["status"] == 400
    assert line["provider"] == "fake-openai"


def test_upstream_401_becomes_502_upstream_auth_failed(client, fake_upstream, gateway):
    rid = new_request_id("up-401")
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="gpt-upstream-401", messages=CHAT,
                                       extra_headers={"x-request-id": rid})
    exc = e.value
    assert exc.status_code == 502
    assert exc.code == "upstream_auth_failed"
    assert exc.type == "server_error"
    envelope(exc)
    assert exc.response.headers["x-switchyard-provider"] == "fake-openai"
    assert exc.response.headers["x-switchyard-attempts"] == "1"
    # The upstream's message quoted the provider key: it must not reach the app or the log.
    assert PROVIDER_KEY not in exc.response.text
    assert len(fake_upstream.by_request_id(rid)) == 1
    line = gateway.log_for(rid)
    assert line["status"] == 502
    assert line["error"] == "upstream_auth_failed"
    assert line["attempts"] == 1
    assert_no_secret(json.dumps(line))
