"""Embeddings: float and base64 encodings, dimensions, batches, the fake upstream."""

import base64
import math
import struct

from conftest import UP_EMBED, fake_vector, new_request_id


def decode_b64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    assert len(raw) % 4 == 0
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def f32(values) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def test_float_and_base64_are_the_same_vector(client):
    text = "switchyards route trains"
    as_float = client.embeddings.create(
        model="mock-embed", input=text, dimensions=8, encoding_format="float")
    as_b64 = client.embeddings.create(
        model="mock-embed", input=text, dimensions=8, encoding_format="base64")

    vec = as_float.data[0].embedding
    assert isinstance(vec, list) and len(vec) == 8
    assert all(isinstance(x, float) for x in vec)
    assert math.isclose(math.sqrt(sum(x * x for x in vec)), 1.0, abs_tol=1e-4)  # unit vector

    b64 = as_b64.data[0].embedding
    assert isinstance(b64, str), "with an explicit base64 format the SDK returns the string"
    decoded = decode_b64(b64)
    assert len(decoded) == 8
    assert f32(vec) == f32(decoded)  # bit-identical as float32

    assert as_float.model == "mock-embed-1"
    assert as_float.object == "list"
    assert as_float.usage.prompt_tokens == math.ceil(len(text) / 4)


def test_sdk_default_encoding_and_default_dimensions(client):
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    text = "deterministic"
    default = client.embeddings.create(model="mock-embed", input=text)
    explicit = client.embeddings.create(model="mock-embed", input=text, encoding_format="float")
    assert len(default.data[0].embedding) == 16  # the mock's default dimensions
    assert f32(default.data[0].embedding) == f32(explicit.data[0].embedding)
    again = client.embeddings.create(model="mock-embed", input=text, encoding_format="float")
    assert again.data[0].embedding == explicit.data[0].embedding  # deterministic


def test_dimensions_are_honoured(client):
    for dims in (1, 3, 64):
        r = client.embeddings.create(model="mock-embed", input="dims", dimensions=dims,
                                     encoding_format="float")
        assert len(r.data[0].embedding) == dims


def test_batch_of_inputs(client):
    inputs = ["alpha", "beta gamma", "delta epsilon zeta"]
    r = client.embeddings.create(model="mock-embed", input=inputs, dimensions=4,
                                 encoding_format="float")
    assert [d.index for d in r.data] == [0, 1, 2]
    vectors = [tuple(d.embedding) for d in r.data]
    assert len(set(vectors)) == 3, "different texts give different vectors"
    assert r.usage.prompt_tokens == sum(math.ceil(len(t) / 4) for t in inputs)
    single = client.embeddings.create(model="mock-embed", input="beta gamma", dimensions=4,
                                      encoding_format="float")
    assert tuple(single.data[0].embedding) == vectors[1]


def test_embeddings_through_fake_openai_upstream(client, fake_upstream):
    rid = new_request_id("embed-up")
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding", input=["one", "two"], dimensions=6, encoding_format="base64",
        extra_headers={"x-request-id": rid})
    assert raw.headers["x-switchyard-provider"] == "fake-openai"
    r = raw.parse()
    assert [decode_b64(d.embedding) for d in r.data] == [fake_vector("one", 6),
                                                         fake_vector("two", 6)]
    (up,) = fake_upstream.by_request_id(rid)
    assert up.path == "/v1/embeddings"
    assert up.json["model"] == UP_EMBED
    assert up.json["input"] == ["one", "two"]
    assert up.json["dimensions"] == 6
    assert up.json["encoding_format"] == "base64"
