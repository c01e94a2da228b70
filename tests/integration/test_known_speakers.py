"""Speakers known by name: reference clips on the OpenAI route and the async route, through the
real stack, on a real meeting (clips cut from one part, matched over the rest)."""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from pipeline.media import decode_audio
from tests.support.helpers import SHARED_AUDIO
from tests.support.stack import Stack

SR = 16_000
MEETING = SHARED_AUDIO / "meetings" / "dev00.wav"
pytestmark = pytest.mark.skipif(not MEETING.is_file(), reason=f"the AMI meeting excerpts are not in {MEETING.parent}")
# dev00's reference (meetings.rttm): MEE009 alone from 1.44 s to 13.15 s, MEE012 alone from
# 13.31 s to 16.92 s. The clips come from there; the recording sent is the rest.
CLIPS = {"Ada": (2.0, 6.0), "Bob": (13.4, 16.8)}


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SR)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    audio = decode_audio(MEETING)
    cut = lambda a, b: audio[int(a * SR):int(b * SR)]  # noqa: E731
    rest = np.concatenate([cut(0, 2.0), cut(6.0, 13.4), cut(16.8, 30.0)])
    folder = tmp_path_factory.mktemp("known")
    recording = folder / "dev00-rest.wav"
    recording.write_bytes(wav_bytes(rest))
    stranger = decode_audio(SHARED_AUDIO / "jfk.flac")[: 6 * SR]
    return {"recording": recording, "clips": {name: wav_bytes(cut(a, b)) for name, (a, b) in CLIPS.items()},
            "stranger": wav_bytes(stranger)}


def post(stack: Stack, path: str, recording: Path, refs: list[tuple[str, Any]], **form: Any) -> requests.Response:
    """``refs``: (name, bytes for a file part, or a str sent as a form value)."""
    files: list[tuple[str, Any]] = [("file", (recording.name, recording.read_bytes(), "audio/wav"))]
    data: list[tuple[str, Any]] = list(form.items())
    for name, ref in refs:
        data.append(("known_speaker_names[]", name))
        if isinstance(ref, bytes):
            files.append(("known_speaker_references[]", (f"{name}.wav", ref, "audio/wav")))
        else:
            data.append(("known_speaker_references[]", ref))
    return stack.post(path, files=files, data=data)


def data_url(blob: bytes) -> str:
    return "data:audio/wav;base64," + base64.b64encode(blob).decode()


def test_named_speakers_on_the_openai_route(live: Stack, meeting: dict[str, Any]) -> None:
    clips = meeting["clips"]
    refs = [("Ada", clips["Ada"]), ("Bob", data_url(clips["Bob"])), ("Zed", meeting["stranger"])]
    response = post(live, "/v1/audio/transcriptions", meeting["recording"], refs,
                    response_format="diarized_json", model="whisper-1")
    assert response.status_code == 200, response.text
    speakers = {s["speaker"] for s in response.json()["segments"]}
    assert {"Ada", "Bob"} <= speakers, speakers
    assert "Zed" not in speakers  # a voice that is not in the recording matches no one


def test_named_speakers_on_the_async_route(live: Stack, meeting: dict[str, Any]) -> None:
    refs = [("Ada", meeting["clips"]["Ada"]), ("Zed", meeting["stranger"])]
    response = post(live, "/api/transcribe/async", meeting["recording"], refs, diarize="true")
    assert response.status_code == 202, response.text
    status = live.wait_final(response.json()["task_id"])
    assert status["status"] == "completed", status
    speakers = {s["id"] for s in status["result"]["speakers"]}
    assert "Ada" in speakers and "Zed" not in speakers
    # Whoever was not named keeps a generic label.
    assert any(s.startswith("SPEAKER_") for s in speakers), speakers


@pytest.mark.parametrize(("refs", "names", "field"), [
    ([("x", b"this is not audio at all")], None, "known_speaker_references[0]"),
    ([("x", "data:text/plain;base64,aGVsbG8=")], None, "known_speaker_references[0]"),
    ([("x", "not a url")], None, "known_speaker_references[0]"),
    ([("x", "short")], None, "known_speaker_references[0]"),
    ([("x", "silence")], None, "known_speaker_references[0]"),
    ([("x", "ok")], ["x", "y"], "known_speaker_references"),
])
def test_bad_references_are_422_naming_the_field(
    live: Stack, meeting: dict[str, Any], refs: list[tuple[str, Any]], names: list[str] | None, field: str
) -> None:
    special = {"short": data_url(meeting["clips"]["Ada"][: 44 + SR]),  # half a second of 16-bit audio
               "silence": data_url(wav_bytes(np.zeros(3 * SR, dtype=np.float32))),
               "ok": data_url(meeting["clips"]["Ada"])}
    refs = [(n, special.get(r, r) if isinstance(r, str) else r) for n, r in refs]
    files: list[tuple[str, Any]] = [("file", ("a.wav", meeting["recording"].read_bytes(), "audio/wav"))]
    data: list[tuple[str, Any]] = [("response_format", "diarized_json")]
    for name in names if names is not None else [n for n, _ in refs]:
        data.append(("known_speaker_names[]", name))
    for name, ref in refs:
        if isinstance(ref, bytes):
            files.append(("known_speaker_references[]", (f"{name}.wav", ref, "audio/wav")))
        else:
            data.append(("known_speaker_references[]", ref))
    response = live.post("/v1/audio/transcriptions", files=files, data=data)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field, response.text
    assert field in json.dumps(response.json()["error"])


def test_twin_diarized_uploads_diarize_once(live: Stack, meeting: dict[str, Any]) -> None:
    """Two identical diarized uploads at once: one diarization (the other takes its turns, or
    the whole result from the cache), the same speakers in both."""
    import threading

    log = live.logs / "diarizer.log"
    before = log.read_text(errors="replace").count("s of audio in") if log.exists() else 0
    recording: Path = meeting["recording"]
    answers: list[requests.Response] = []

    def one() -> None:
        answers.append(post(live, "/api/transcribe/async", recording, [], diarize="true", max_speakers="3"))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    results = [live.wait_final(a.json()["task_id"]) for a in answers]
    assert [r["status"] for r in results] == ["completed", "completed"], results
    speakers = [[(s["start"], s["end"], s["speaker"]) for s in r["result"]["segments"]] for r in results]
    assert speakers[0] == speakers[1] and {s for *_, s in speakers[0]}
    after = log.read_text(errors="replace").count("s of audio in")
    assert after - before == 1, f"{after - before} diarizations for two identical uploads"
