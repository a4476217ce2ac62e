"""The fake Bedrock itself, checked without the gateway.

`test_bedrock.py` trusts the fake twice: its SigV4 verifier decides whether the
gateway signed correctly, and the values tests expect were copied by hand from the
recordings it replays. Both are checked here against independent references: AWS's
own SigV4 test suite, requests signed by botocore (directly, and by botocore's real
`bedrock-runtime` client, which also parses the fake's answers and event streams as
AWS's SDK does), and the recording files.
"""

import hashlib
import http.client
import json
from datetime import datetime, timedelta, timezone

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError
from botocore.session import get_session

from conftest import (
    BEDROCK_ACCESS_KEY_ID,
    BEDROCK_ANSWER_FILES,
    BEDROCK_API_KEY,
    BEDROCK_CAPTURES,
    BEDROCK_CONVERSE_PATH,
    BEDROCK_ERRORS,
    BEDROCK_FIXTURES,
    BEDROCK_MODEL_ID,
    BEDROCK_REGION,
    BEDROCK_SECRET,
    BEDROCK_SESSION_TOKEN,
    BEDROCK_STREAM_PATH,
    BEDROCK_WRONG_SECRET,
    BR_CACHE,
    BR_CACHE_READ,
    BR_CACHE_WRITE,
    BR_CONTENT_FILTERED,
    BR_EXPECTED,
    BR_SIGNATURE_MESSAGE,
    BR_STOP_SEQUENCE,
    BR_TEXT,
    BR_TWO_TOOLS,
    BRS_CORRUPT,
    BRS_EXCEPTION,
    BRS_EXCEPTION_FIRST,
    BRS_EXCEPTION_PAYLOAD,
    BRS_EXCEPTION_TYPE,
    BRS_FRAMES_BEFORE_BREAK,
    BRS_TEXT,
    BRS_TEXT_PIECES,
    BRS_TEXT_USAGE,
    BRS_TOOL,
    BRS_TOOL_ID,
    BRS_TOOL_INPUT,
    BRS_TOOL_NAME,
    BRS_TOOL_TEXT,
    BRS_TOOL_USAGE,
    BRS_TRUNCATED,
    CORAL_ERROR_NAMESPACE,
    EVENTSTREAM_CONTENT_TYPE,
    SIGV4_SUITE,
    bedrock_answer_body,
    bedrock_marker,
    bedrock_stream_bytes,
    eventstream_frame_ok,
    eventstream_frames,
    parse_sigv4_authorization,
    verify_sigv4,
)

AWS_SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # the suite's README
# The suite's cases this verifier must reproduce exactly (canonical request and
# signature). `double-url-encode` is the one a model id's `%3A` depends on.
AWS_SUITE_CASES = [
    "get-vanilla", "post-vanilla", "get-unreserved", "get-utf8", "post-header-key-sort",
    "post-header-value-case", "get-header-value-trim", "get-header-key-duplicate",
    "double-url-encode", "post-sts-token/post-sts-header-before",
]
# OpenAI's finish reasons for Bedrock's stop reasons (PROVIDERS.md §4.2), by hand.
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                  "tool_use": "tool_calls", "guardrail_intervened": "content_filter",
                  "content_filtered": "content_filter"}


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

def suite_case(case: str):
    """(method, path, headers, body, authorization, canonical request, credentials,
    region, service, time) of one case of AWS's SigV4 test suite."""
    folder = SIGV4_SUITE / case
    name = case.rsplit("/", 1)[-1]
    head, _, body = (folder / f"{name}.req").read_text().partition("\n\n")
    request_line, *header_lines = head.split("\n")
    method, path, _ = request_line.split(" ")
    headers = [(n, v) for n, _, v in (line.partition(":") for line in header_lines)]
    authorization = (folder / f"{name}.authz").read_text().strip()
    _, date, region, service, _ = parse_sigv4_authorization(authorization)["Credential"].split("/")
    amz_date = next(v for n, v in headers if n.lower() == "x-amz-date")
    token = next((v for n, v in headers if n.lower() == "x-amz-security-token"), None)
    return (method, path, headers, body.encode(), authorization,
            (folder / f"{name}.creq").read_text(),
            Credentials("AKIDEXAMPLE", AWS_SUITE_SECRET, token), region, service,
            datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc))


def converse_body(text: str = "Hello") -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": [{"text": text}]}]}).encode()


def signed_headers(url: str, body: bytes, credentials: Credentials, *,
                   region: str = BEDROCK_REGION, service: str = "bedrock",
                   extra: dict[str, str] | None = None) -> dict[str, str]:
    """The headers botocore's own SigV4 signer puts on a POST of `body` to `url`."""
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"content-type": "application/json", **(extra or {})})
    SigV4Auth(credentials, service, region).add_auth(request)
    return dict(request.headers.items())


def post(fake, path: str, body: bytes, headers: dict[str, str]):
    """(status, headers, body) of one POST to the fake, the path sent as given."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.server_address[1], timeout=10)
    try:
        conn.putrequest("POST", path, skip_host="host" in {k.lower() for k in headers},
                        skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def sts_credentials(secret: str = BEDROCK_SECRET) -> Credentials:
    return Credentials(BEDROCK_ACCESS_KEY_ID, secret, BEDROCK_SESSION_TOKEN)


def runtime_client(fake, credentials: Credentials):
    """botocore's real `bedrock-runtime` client, pointed at the fake, no retries."""
    return get_session().create_client(
        "bedrock-runtime", region_name=BEDROCK_REGION, endpoint_url=fake.origin,
        aws_access_key_id=credentials.access_key, aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def decode_frames(data: bytes) -> list:
    """botocore's event-stream decoder over `data` (checks both CRCs of each frame)."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def assert_refused(status, headers, body, error: str = "InvalidSignatureException"):
    assert status == 403, body
    assert headers["x-amzn-errortype"] == f"{error}:{CORAL_ERROR_NAMESPACE}"
    return json.loads(body)["message"]


# --------------------------------------------------------------------------------------
# The SigV4 verifier
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", AWS_SUITE_CASES)
def test_verifier_reproduces_the_aws_sigv4_suite(case):
    method, path, headers, body, authz, creq, creds, region, service, at = suite_case(case)
    verdict = verify_sigv4(method, path, headers + [("Authorization", authz)], body,
                           credentials=creds, region=region, service=service, now=at)
    assert verdict.ok, verdict.reason
    assert verdict.canonical_request == creq

    # One bit of the signature, or the secret, wrong: refused.
    sig = parse_sigv4_authorization(authz)["Signature"]
    tampered = authz.replace(sig, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    for auth, credentials in ((tampered, creds),
                              (authz, Credentials(creds.access_key, "x" + creds.secret_key,
                                                  creds.token))):
        verdict = verify_sigv4(method, path, headers + [("Authorization", auth)], body,
                               credentials=credentials, region=region, service=service, now=at)
        assert verdict.error == "InvalidSignatureException", verdict.reason


def test_double_url_encode_case_is_the_model_id_rule():
    """AWS's `double-url-encode` case: `%3A` on the wire is `%253A` in the canonical
    URI, exactly as a Bedrock model id's `:`."""
    *_, creq, _, _, _, _ = suite_case("double-url-encode")
    assert creq.split("\n")[1] == ("/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-west-2"
                                   "%253A892717189312%253Afunction%253Amy-rusty-fun/invocations")


def test_fake_accepts_botocore_signatures_and_refuses_tampering(fake_bedrock):
    url = fake_bedrock.origin + BEDROCK_CONVERSE_PATH
    body = converse_body()
    good = signed_headers(url, body, sts_credentials())
    assert good["X-Amz-Security-Token"] == BEDROCK_SESSION_TOKEN
    assert "x-amz-security-token" in parse_sigv4_authorization(
        good["Authorization"])["SignedHeaders"].split(";")
    status, headers, answer = post(fake_bedrock, BEDROCK_CONVERSE_PATH, body, good)
    assert status == 200, answer
    assert headers["content-type"] == "application/json"
    assert answer == bedrock_answer_body(BR_TEXT)
    (rec,) = [r for r in fake_bedrock.received()
              if r.header("authorization") == good["Authorization"]]
    assert rec.auth_problem is None
    assert headers["x-amzn-requestid"] == rec.amzn_request_id
    assert rec.path == BEDROCK_CONVERSE_PATH  # the raw path, as sent

    # The canonical URI the fake computed has the model id encoded twice.
    verdict = verify_sigv4("POST", BEDROCK_CONVERSE_PATH, rec.header_list, body,
                           credentials=sts_credentials(), region=BEDROCK_REGION)
    assert verdict.ok
    assert verdict.canonical_request.split("\n")[1] == (
        "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse")

    # Signed over the model id with a raw `:` (canonical URI encoded once), sent
    # encoded: the single-encoding bug. Refused, and AWS's message says why.
    single = signed_headers(fake_bedrock.origin + f"/model/{BEDROCK_MODEL_ID}/converse", body,
                            sts_credentials())
    status, headers, answer = post(fake_bedrock, BEDROCK_CONVERSE_PATH, body, single)
    message = assert_refused(status, headers, answer)
    assert message.startswith(BR_SIGNATURE_MESSAGE)
    assert "\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n" in message
    # ...while that same signature is right for a request sent with the raw `:`.
    status, _, answer = post(fake_bedrock, f"/model/{BEDROCK_MODEL_ID}/converse", body, single)
    assert status == 200, answer

    # Triple encoding (the path encoded twice before signing): refused.
    triple = signed_headers(url.replace("%3A", "%253A"), body, sts_credentials())
    assert_refused(*post(fake_bedrock, BEDROCK_CONVERSE_PATH, body, triple))

    # Another body, path, signed header value, region, service or secret: refused.
    assert_refused(*post(fake_bedrock, BEDROCK_CONVERSE_PATH, converse_body("Hellp"), good))
    assert_refused(*post(fake_bedrock, BEDROCK_STREAM_PATH, body, good))
    assert_refused(*post(fake_bedrock, BEDROCK_CONVERSE_PATH, body,
                         dict(good, **{"content-type": "application/json; charset=utf-8"})))
    for kwargs in ({"region": "us-west-2"}, {"service": "bedrock-runtime"}):
        assert_refused(*post(fake_bedrock, BEDROCK_CONVERSE_PATH, body,
                             signed_headers(url, body, sts_credentials(), **kwargs)))
    wrong = signed_headers(url, body, sts_credentials(BEDROCK_WRONG_SECRET))
    message = assert_refused(*post(fake_bedrock, BEDROCK_CONVERSE_PATH, body, wrong))
    # Like AWS, the message quotes the canonical request: the session token with it.
    assert BEDROCK_SESSION_TOKEN in message
    assert BEDROCK_WRONG_SECRET not in message and BEDROCK_SECRET not in message

    # The session token missing, another one, or not signed: refused.
    no_token = signed_headers(url, body, Credentials(BEDROCK_ACCESS_KEY_ID, BEDROCK_SECRET))
    assert_refused(*post(fake_bedrock, BEDROCK_CONVERSE_PATH, body, no_token),
                   "UnrecognizedClientException")
    other = Credentials(BEDROCK_ACCESS_KEY_ID, BEDROCK_SECRET, BEDROCK_SESSION_TOKEN + "x")
    assert_refused(*post(fake_bedrock, BEDROCK_CONVERSE_PATH, body,
                         signed_headers(url, body, other)), "UnrecognizedClientException")
    unsigned = dict(no_token, **{"X-Amz-Security-Token": BEDROCK_SESSION_TOKEN})
    assert_refused(*post(fake_bedrock, BEDROCK_CONVERSE_PATH, body, unsigned))

    # Signed six minutes ago: expired.
    old = (datetime.now(timezone.utc) - timedelta(minutes=6)).strftime("%Y%m%dT%H%M%SZ")
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"content-type": "application/json"})
    signer = SigV4Auth(sts_credentials(), "bedrock", BEDROCK_REGION)
    request.context["timestamp"] = old
    signer._modify_request_before_signing(request)
    creq = signer.canonical_request(request)
    signer._inject_signature_to_request(
        request, signer.signature(signer.string_to_sign(request, creq), request))
    status, headers, answer = post(fake_bedrock, BEDROCK_CONVERSE_PATH, body,
                                   dict(request.headers.items()))
    assert_refused(status, headers, answer)
    assert "expired" in fake_bedrock.received()[-1].auth_problem

    # No Authorization at all.
    assert_refused(*post(fake_bedrock, BEDROCK_CONVERSE_PATH, body,
                         {"content-type": "application/json"}),
                   "MissingAuthenticationTokenException")


def test_fake_without_session_token_refuses_one(fake_bedrock_iam):
    url = fake_bedrock_iam.origin + BEDROCK_CONVERSE_PATH
    body = converse_body()
    plain = Credentials(BEDROCK_ACCESS_KEY_ID, BEDROCK_SECRET)
    status, _, answer = post(fake_bedrock_iam, BEDROCK_CONVERSE_PATH, body,
                             signed_headers(url, body, plain))
    assert status == 200, answer
    assert_refused(*post(fake_bedrock_iam, BEDROCK_CONVERSE_PATH, body,
                         signed_headers(url, body, sts_credentials())),
                   "UnrecognizedClientException")


def test_fake_with_api_key_wants_the_bearer_key(fake_bedrock_apikey):
    body = converse_body()
    ok = {"content-type": "application/json", "authorization": f"Bearer {BEDROCK_API_KEY}"}
    status, _, answer = post(fake_bedrock_apikey, BEDROCK_CONVERSE_PATH, body, ok)
    assert status == 200 and answer == bedrock_answer_body(BR_TEXT)
    assert fake_bedrock_apikey.received()[-1].auth_problem is None
    bad = dict(ok, authorization=f"Bearer {BEDROCK_API_KEY}x")
    assert_refused(*post(fake_bedrock_apikey, BEDROCK_CONVERSE_PATH, body, bad),
                   "UnrecognizedClientException")
    sigv4 = signed_headers(fake_bedrock_apikey.origin + BEDROCK_CONVERSE_PATH, body,
                           sts_credentials())
    assert_refused(*post(fake_bedrock_apikey, BEDROCK_CONVERSE_PATH, body, sigv4),
                   "UnrecognizedClientException")


# --------------------------------------------------------------------------------------
# The answers, as AWS's SDK reads them
# --------------------------------------------------------------------------------------

def test_botocore_bedrock_runtime_client_against_the_fake(fake_bedrock):
    client = runtime_client(fake_bedrock, sts_credentials())
    reply = client.converse(modelId=BEDROCK_MODEL_ID,
                            messages=[{"role": "user", "content": [{"text": "count"}]}])
    assert reply["output"]["message"]["content"] == [{"text": BR_EXPECTED[BR_TEXT].content}]
    assert reply["stopReason"] == "end_turn"
    rec = fake_bedrock.received()[-1]
    assert rec.path == BEDROCK_CONVERSE_PATH  # AWS's SDK encodes the model id like this
    assert rec.auth_problem is None

    stream = client.converse_stream(
        modelId=BEDROCK_MODEL_ID,
        messages=[{"role": "user", "content": [{"text": bedrock_marker(BRS_TOOL)}]}])
    events = list(stream["stream"])
    assert fake_bedrock.received()[-1].path == BEDROCK_STREAM_PATH
    assert stream["ResponseMetadata"]["HTTPHeaders"]["content-type"] == EVENTSTREAM_CONTENT_TYPE
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events
                   if "contentBlockDelta" in e)
    assert text == BRS_TOOL_TEXT
    (start,) = [e["contentBlockStart"]["start"]["toolUse"] for e in events
                if "contentBlockStart" in e]
    assert (start["toolUseId"], start["name"]) == (BRS_TOOL_ID, BRS_TOOL_NAME)
    assert events[-1]["metadata"]["usage"]["inputTokens"] == BRS_TOOL_USAGE[0]

    for marker in (BRS_EXCEPTION, BRS_EXCEPTION_FIRST):
        stream = client.converse_stream(
            modelId=BEDROCK_MODEL_ID,
            messages=[{"role": "user", "content": [{"text": bedrock_marker(marker)}]}])
        with pytest.raises(EventStreamError) as e:
            list(stream["stream"])
        assert e.value.response["Error"]["Code"] == BRS_EXCEPTION_TYPE
        assert e.value.response["Error"]["Message"] == BRS_EXCEPTION_PAYLOAD["message"]

    for marker, (name, status, body) in BEDROCK_ERRORS.items():
        with pytest.raises(ClientError) as e:
            client.converse(modelId=BEDROCK_MODEL_ID,
                            messages=[{"role": "user",
                                       "content": [{"text": bedrock_marker(marker)}]}])
        assert e.value.response["Error"]["Code"] == name
        assert e.value.response["Error"]["Message"] == body["message"]
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status

    bad = runtime_client(fake_bedrock, sts_credentials(BEDROCK_WRONG_SECRET))
    with pytest.raises(ClientError) as e:
        bad.converse(modelId=BEDROCK_MODEL_ID,
                     messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_stream_bodies_frame_by_frame():
    text_frames = eventstream_frames(bedrock_stream_bytes(BRS_TEXT))
    assert len(text_frames) == 9 and all(eventstream_frame_ok(f) for f in text_frames)
    assert len(decode_frames(bedrock_stream_bytes(BRS_TOOL))) == 25

    decoded = decode_frames(bedrock_stream_bytes(BRS_EXCEPTION))
    kinds = [m.headers.get(":event-type") or m.headers.get(":exception-type") for m in decoded]
    assert kinds == ["messageStart", "contentBlockDelta", "contentBlockDelta",
                     BRS_EXCEPTION_TYPE]
    assert decoded[-1].headers[":message-type"] == "exception"
    assert json.loads(decoded[-1].payload) == BRS_EXCEPTION_PAYLOAD
    pieces = [json.loads(m.payload)["delta"]["text"] for m in decoded[1:3]]
    assert pieces == BRS_TEXT_PIECES[:BRS_FRAMES_BEFORE_BREAK - 1]

    (only,) = decode_frames(bedrock_stream_bytes(BRS_EXCEPTION_FIRST))
    assert only.headers[":exception-type"] == BRS_EXCEPTION_TYPE

    # Truncated: whole frames, then half a frame, then nothing.
    truncated = bedrock_stream_bytes(BRS_TRUNCATED)
    frames = eventstream_frames(truncated)
    assert [eventstream_frame_ok(f) for f in frames] == [True] * BRS_FRAMES_BEFORE_BREAK + [False]
    buffer = EventStreamBuffer()
    buffer.add_data(truncated)
    assert len(list(buffer)) == BRS_FRAMES_BEFORE_BREAK  # the decoder waits for the rest

    # Corrupt: the 4th frame's prelude CRC holds, its message CRC does not.
    corrupt = eventstream_frames(bedrock_stream_bytes(BRS_CORRUPT))
    assert len(corrupt) == 9
    assert [eventstream_frame_ok(f) for f in corrupt].index(False) == BRS_FRAMES_BEFORE_BREAK
    assert sum(not eventstream_frame_ok(f) for f in corrupt) == 1
    with pytest.raises(ChecksumMismatch):
        decode_frames(bedrock_stream_bytes(BRS_CORRUPT))


# --------------------------------------------------------------------------------------
# The hand-copied expectations, against the recordings
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("marker", sorted(BR_EXPECTED))
def test_expected_answers_match_the_recordings(marker):
    body = json.loads(bedrock_answer_body(marker))
    want = BR_EXPECTED[marker]
    blocks = body["output"]["message"]["content"]
    texts = [b["text"] for b in blocks if "text" in b]
    if marker == BR_TWO_TOOLS:
        assert "|".join(texts) == want.content
    else:
        assert ("".join(texts) or None) == want.content
    tools = tuple((b["toolUse"]["toolUseId"], b["toolUse"]["name"], b["toolUse"]["input"])
                  for b in blocks if "toolUse" in b)
    assert tools == want.tool_calls
    reasoning = [b["reasoningContent"]["reasoningText"]["text"] for b in blocks
                 if "reasoningContent" in b]
    assert (reasoning[0] if reasoning else None) == want.reasoning
    assert FINISH_REASONS[body["stopReason"]] == want.finish_reason
    usage = body["usage"]
    assert (usage["inputTokens"], usage["outputTokens"]) == (want.input_tokens,
                                                             want.output_tokens)
    assert (usage.get("cacheReadInputTokens", 0), usage.get("cacheWriteInputTokens", 0)) == (
        want.cache_read, want.cache_write)
    assert usage["totalTokens"] == (want.input_tokens + want.output_tokens + want.cache_read
                                    + want.cache_write)


def test_derived_answers_change_one_field_only():
    for marker, changed in ((BR_STOP_SEQUENCE, {"stopReason"}),
                            (BR_CONTENT_FILTERED, {"stopReason"}), (BR_CACHE, {"usage"})):
        real = json.loads((BEDROCK_FIXTURES / BEDROCK_ANSWER_FILES[marker]).read_bytes())
        derived = json.loads(bedrock_answer_body(marker))
        assert {k for k in real if real[k] != derived[k]} == changed
        assert set(real) == set(derived)
    usage = json.loads(bedrock_answer_body(BR_CACHE))["usage"]
    assert (usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]) == (
        BR_CACHE_READ, BR_CACHE_WRITE)
    # The unchanged recordings are replayed byte for byte.
    assert bedrock_answer_body(BR_TEXT) == (
        BEDROCK_FIXTURES / BEDROCK_ANSWER_FILES[BR_TEXT]).read_bytes()


def test_expected_stream_values_match_the_decoded_captures():
    def payloads(name: str) -> list[tuple[str, dict]]:
        decoded = json.loads((BEDROCK_CAPTURES / f"{name}.decoded.json").read_text())
        out = []
        for frame in decoded["frames"]:
            headers = {h["name"]: h["value"] for h in frame["headers"]}
            kind = headers.get(":event-type") or headers.get(":exception-type")
            out.append((kind, frame["payload_json"]))
        return out

    text = payloads("envoy-converse-stream-text")
    assert [p["delta"]["text"] for k, p in text if k == "contentBlockDelta"] == BRS_TEXT_PIECES
    assert [p["stopReason"] for k, p in text if k == "messageStop"] == ["end_turn"]
    usage = text[-1][1]["usage"]
    assert (usage["inputTokens"], usage["outputTokens"], usage["totalTokens"]) == BRS_TEXT_USAGE

    tool = payloads("envoy-converse-stream-text-tooluse")
    deltas = [p["delta"] for k, p in tool if k == "contentBlockDelta"]
    assert "".join(d.get("text", "") for d in deltas) == BRS_TOOL_TEXT
    assert json.loads("".join(d["toolUse"]["input"] for d in deltas if "toolUse" in d)) \
        == BRS_TOOL_INPUT
    (start,) = [p["start"]["toolUse"] for k, p in tool if k == "contentBlockStart"]
    assert (start["toolUseId"], start["name"]) == (BRS_TOOL_ID, BRS_TOOL_NAME)
    assert [p["stopReason"] for k, p in tool if k == "messageStop"] == ["tool_use"]
    usage = tool[-1][1]["usage"]
    assert (usage["inputTokens"], usage["outputTokens"], usage["totalTokens"]) == BRS_TOOL_USAGE

    assert payloads("vercel-model-stream-error-exception") == [
        (BRS_EXCEPTION_TYPE, BRS_EXCEPTION_PAYLOAD)]

    # The .bin files are the bytes the decoded files describe.
    for name in ("envoy-converse-stream-text", "envoy-converse-stream-text-tooluse"):
        data = (BEDROCK_CAPTURES / f"{name}.bin").read_bytes()
        decoded = json.loads((BEDROCK_CAPTURES / f"{name}.decoded.json").read_text())
        frames = eventstream_frames(data)
        assert len(frames) == decoded["frame_count"]
        assert [hashlib.sha256(f).hexdigest() for f in frames] == [
            hashlib.sha256(data[d["offset"]:d["offset"] + d["total_length"]]).hexdigest()
            for d in decoded["frames"]]
