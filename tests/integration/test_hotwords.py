"""hotwords through the real stack, on a real recording that says the product name "ComfyUI"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI, UnprocessableEntityError

from pipeline.options import MAX_HOTWORDS, MAX_HOTWORDS_CHARS, TranscribeOptions
from pipeline.settings import Settings
from tests.support.helpers import shared_audio
from tests.support.stack import Stack

TERM = "ComfyUI"


@pytest.fixture
def recording() -> Path:
    return shared_audio("hotwords.mp3")


def submit(live: Stack, recording: Path, **form: str) -> dict[str, Any]:
    with recording.open("rb") as fh:
        accepted = live.post("/api/transcribe/async", files={"file": fh}, data=form)
    assert accepted.status_code == 202, accepted.text
    return live.wait_final(accepted.json()["task_id"])


def test_hotwords_make_faster_whisper_write_the_term_and_change_the_cache_key(
        live: Stack, recording: Path) -> None:
    # tiny.en alone hears "comfy eye".
    plain = submit(live, recording)
    assert plain["status"] == "completed" and TERM not in plain["result"]["text"]

    favoured = submit(live, recording, hotwords=f" {TERM} , RabbitMQ,{TERM}")
    assert favoured["status"] == "completed", favoured
    # Options differ, so the cache answered neither from the other.
    assert favoured["cached"] is False
    assert TERM in favoured["result"]["text"]
    assert "warnings" not in favoured["result"]

    # The same terms, however spaced or repeated, are the same options: a cache hit.
    again = submit(live, recording, hotwords=f"{TERM}, RabbitMQ")
    assert again["cached"] is True and again["result"]["text"] == favoured["result"]["text"]

    with recording.open("rb") as fh:
        sync = live.post("/api/transcribe?format=text", files={"file": fh}, data={"hotwords": TERM})
    assert sync.status_code == 200 and TERM in sync.text

    client = OpenAI(base_url=f"{live.url}/v1", api_key="not-needed-without-API_KEYS", max_retries=0)
    with recording.open("rb") as fh:
        result = client.audio.transcriptions.create(model="whisper-1", file=fh, extra_body={"hotwords": TERM})
    assert TERM in result.text


def test_openai_whisper_puts_hotwords_in_the_prompt_and_says_so(live: Stack, recording: Path) -> None:
    job = submit(live, recording, engine="openai-whisper", hotwords=TERM)
    assert job["status"] == "completed", job
    assert TERM in job["result"]["text"]
    [warning] = job["result"]["warnings"]
    assert "openai-whisper has no hotwords" in warning and "prompt" in warning
    body = live.get(f"/api/transcribe/async/{job['task_id']}/result").json()
    assert body["warnings"] == [warning]


def _stored_files(live: Stack) -> set[Path]:
    return {p for p in live.settings.upload_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("hotwords, problem", [
    (",".join(f"term{i}" for i in range(MAX_HOTWORDS + 1)), f"at most {MAX_HOTWORDS} terms"),
    ("x" * (MAX_HOTWORDS_CHARS + 1), f"at most {MAX_HOTWORDS_CHARS} characters"),
])
def test_too_many_hotwords_are_a_422_naming_the_field_and_leave_no_job(
        live: Stack, recording: Path, hotwords: str, problem: str) -> None:
    jobs_before = {j["task_id"] for j in live.get("/api/transcribe/async?limit=100").json()["jobs"]}
    files_before = _stored_files(live)
    for route in ("/api/transcribe/async", "/api/transcribe", "/v1/audio/transcriptions"):
        with recording.open("rb") as fh:
            answer = live.post(route, files={"file": fh}, data={"hotwords": hotwords})
        assert answer.status_code == 422, (route, answer.text)
        error = answer.json()["error"]
        assert error["field"] == "hotwords" and problem in error["message"], (route, error)
    client = OpenAI(base_url=f"{live.url}/v1", api_key="not-needed-without-API_KEYS", max_retries=0)
    with pytest.raises(UnprocessableEntityError, match="hotwords"), recording.open("rb") as fh:
        client.audio.transcriptions.create(model="whisper-1", file=fh, extra_body={"hotwords": hotwords})
    jobs_after = {j["task_id"] for j in live.get("/api/transcribe/async?limit=100").json()["jobs"]}
    assert jobs_after == jobs_before
    assert _stored_files(live) == files_before


def test_hotwords_are_part_of_the_options_and_so_of_the_cache_key() -> None:
    settings = Settings.from_env({})
    plain = TranscribeOptions.parse({}, settings)
    one = TranscribeOptions.parse({"hotwords": "ComfyUI"}, settings)
    assert one.hotwords == "ComfyUI" and plain.hotwords is None
    assert one.fingerprint() != plain.fingerprint()
    assert TranscribeOptions.from_json(one.to_json()) == one
    # Blank terms are dropped; nothing left is no hotwords at all.
    assert TranscribeOptions.parse({"hotwords": " , ,"}, settings) == plain
