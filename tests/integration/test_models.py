"""The models list: the official `openai` client against the running service, and /api/models
with where each model is loaded (from the real workers' heartbeats)."""

from __future__ import annotations

from typing import Any

import pytest
from openai import NotFoundError, OpenAI

from tests.support.helpers import SPEECH_EN, wait_for
from tests.support.stack import Stack


@pytest.fixture
def client(live: Stack) -> OpenAI:
    return OpenAI(base_url=f"{live.url}/v1", api_key="not-needed-without-API_KEYS", max_retries=0)


def test_the_openai_client_lists_and_retrieves_the_models(client: OpenAI, live: Stack) -> None:
    listed = {m.id: m for m in client.models.list()}
    # The stack runs with the defaults: MODELS empty means tiny.en and base; tiny.en is the default.
    assert set(listed) == {"tiny.en", "base", "whisper-1"}
    assert all(m.object == "model" and m.owned_by == "openai" and isinstance(m.created, int)
               for m in listed.values())
    extra: dict[str, Any] = listed["tiny.en"].model_extra or {}
    assert extra["english_only"] is True and extra["engine"] == "faster-whisper" and extra["default"] is True
    assert (listed["base"].model_extra or {})["english_only"] is False
    alias = listed["whisper-1"].model_extra or {}
    assert alias["alias_of"] == "tiny.en" and alias["english_only"] is True

    one = client.models.retrieve("base")
    assert one.id == "base" and one.object == "model"
    assert client.models.retrieve("whisper-1").id == "whisper-1"

    with pytest.raises(NotFoundError) as missing:
        client.models.retrieve("large-v9")
    assert "large-v9" in missing.value.message
    body = live.get("/v1/models/large-v9").json()
    assert body["error"]["code"] == "model_not_listed" and "tiny.en" in body["error"]["message"]


def test_api_models_says_where_each_model_is_loaded(client: OpenAI, live: Stack) -> None:
    # A transcription makes a worker load the default model; its heartbeat then says so.
    with SPEECH_EN.open("rb") as fh:
        assert client.audio.transcriptions.create(model="whisper-1", file=fh).text

    def loaded() -> dict[str, Any] | None:
        data = {m["id"]: m for m in live.get("/api/models").json()["data"]}
        engines = {p["engine"] for p in data["tiny.en"]["loaded"]}
        return data if "faster-whisper" in engines else None

    # The stack is shared with other test modules: openai-whisper may hold tiny.en somewhere too.
    models = wait_for(loaded, timeout=30)
    place = next(p for p in models["tiny.en"]["loaded"] if p["engine"] == "faster-whisper")
    assert place["engine"] == "faster-whisper" and place["device"] == "cpu" and place["compute_type"]
    # No API keys in the stack: every caller is an admin and sees which process holds it.
    assert place["host"] and place["pid"] > 0
    assert models["tiny.en"]["devices"] == ["cpu"]
    # The alias is where its model is.
    assert models["whisper-1"]["loaded"] == models["tiny.en"]["loaded"]
    assert {k: v for k, v in models["base"].items() if k not in ("loaded", "devices")} == \
        live.get("/v1/models/base").json()
