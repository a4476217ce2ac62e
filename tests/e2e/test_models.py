"""`GET /v1/models` and `GET /v1/models/{name}`, filtered by the key's allow-list."""

import openai
import pytest

from conftest import AZURE_MODELS

ALL_MODELS = {"gpt-4o", "gpt-bad-request", "gpt-upstream-401", "mock-chat", "mock-embed",
              "text-embedding"} | AZURE_MODELS


def test_list_shows_every_model_to_an_unrestricted_key(client):
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert set(ids) == ALL_MODELS
    assert len(ids) == len(set(ids))
    for m in page.data:
        assert m.object == "model"
        assert m.owned_by == "switchyard"
        assert isinstance(m.created, int) and m.created > 0


def test_list_is_filtered_by_the_allow_list(restricted_client):
    ids = {m.id for m in restricted_client.models.list()}
    assert ids == {"mock-chat", "mock-embed"}


def test_retrieve(client, restricted_client):
    m = client.models.retrieve("gpt-4o")
    assert (m.id, m.object, m.owned_by) == ("gpt-4o", "model", "switchyard")
    m = restricted_client.models.retrieve("mock-chat")
    assert m.id == "mock-chat"


def test_retrieve_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"


def test_retrieve_model_outside_allow_list_is_404_not_403(restricted_client):
    # Keys cannot probe which names exist: a hidden model looks like a missing one.
    with pytest.raises(openai.NotFoundError) as e:
        restricted_client.models.retrieve("gpt-4o")
    assert e.value.code == "model_not_found"
