"""Transcript features through the real stack, on real recordings: custom spelling, the views
over a finished transcript (sentences, paragraphs, search, re-flowed captions), PII redaction
(text and audio), and multichannel."""

from __future__ import annotations

import contextlib
import io
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import srt
from openai import OpenAI

from pipeline import keys
from pipeline.media import decode_audio
from tests.support.helpers import FIXTURES, JFK_TEXT, says_number, shared_audio, wer
from tests.support.stack import Stack

WIZARD = ("He began a confused complaint against the wizard, who had vanished behind the curtain on "
          "the left.")
HORIZON = "The horizon seems extremely distant."
NUMBER = FIXTURES / "speech_number.wav"  # "Our meeting has 42 people. Thank you for coming."
SPELLING = json.dumps([{"from": ["fellow Americans"], "to": "fellow citizens"}, {"from": ["country"], "to": "nation"}])


def submit(live: Stack, recording: Path, **form: str) -> dict[str, Any]:
    with recording.open("rb") as fh:
        accepted = live.post("/api/transcribe/async", files={"file": fh}, data=form)
    assert accepted.status_code == 202, accepted.text
    job = live.wait_final(accepted.json()["task_id"])
    assert job["status"] == "completed", job
    return job


def test_custom_spelling_and_the_views_over_the_transcript(live: Stack) -> None:
    jfk = shared_audio("jfk.flac")
    job = submit(live, jfk, custom_spelling=SPELLING)
    text = job["result"]["text"]
    assert "nation" in text and "country" not in text.lower() and "fellow citizens" in text
    assert job["cached"] is False
    # The same rules are the same options; none are other options.
    assert submit(live, jfk, custom_spelling=SPELLING)["cached"] is True
    plain = submit(live, jfk)
    assert plain["cached"] is False and "country" in plain["result"]["text"]
    base = f"/api/transcribe/async/{job['task_id']}"

    # Sentences and paragraphs: the job had no word timestamps, so their times are spread.
    sentences = live.get(f"{base}/sentences").json()["sentences"]
    assert sentences and all(s["start"] < s["end"] <= job["duration"] + 0.01 for s in sentences)
    assert wer(JFK_TEXT.replace("country", "nation").replace("fellow Americans", "fellow citizens"),
               " ".join(s["text"] for s in sentences)) <= 0.2
    assert all("words" not in s for s in sentences)
    paragraphs = live.get(f"{base}/paragraphs").json()["paragraphs"]
    assert " ".join(p["text"] for p in paragraphs) == " ".join(s["text"] for s in sentences)

    # Search: case and punctuation do not matter; the spelling is what is found.
    matches = live.get(f"{base}/search", params={"words": "NATION,ask,country"}).json()["matches"]
    by_term = {m["text"]: m for m in matches}
    assert by_term["NATION"]["count"] == 2 and by_term["country"]["count"] == 0
    assert by_term["ask"]["count"] == 2
    first, second = by_term["ask"]["timestamps"]
    assert first[0] < first[1] <= second[0] < second[1] <= job["duration"] + 0.01
    assert live.get(f"{base}/search", params={"words": " , "}).json()["error"]["field"] == "words"

    # Captions re-flowed from the words.
    body = live.get(f"{base}/result", params={"format": "srt", "chars_per_caption": "24", "max_lines": "2"}).text
    cues = list(srt.parse(body))
    assert len(cues) >= 3 and all(len(line) <= 24 for c in cues for line in c.content.split("\n"))
    assert any("\n" in c.content for c in cues)
    refused = live.get(f"{base}/result", params={"format": "json", "chars_per_caption": "24"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "chars_per_caption"

    client = OpenAI(base_url=f"{live.url}/v1", api_key="not-needed-without-API_KEYS", max_retries=0)
    with jfk.open("rb") as fh:
        result = client.audio.transcriptions.create(model="whisper-1", file=fh,
                                                    extra_body={"custom_spelling": SPELLING})
    assert "nation" in result.text and "country" not in result.text.lower()


def _cache_entries(live: Stack) -> list[dict[str, Any]]:
    """The transcripts in the cache."""
    entries = []
    for key in live.redis.keys(f"{keys.CACHE_PREFIX}:*"):
        if live.redis.type(key) == "string":
            with contextlib.suppress(ValueError):
                value = json.loads(str(live.redis.get(key)))
                if isinstance(value, dict) and "segments" in value:
                    entries.append(value)
    return entries


def test_redaction_replaces_the_number_everywhere_and_tones_out_the_audio(live: Stack) -> None:
    job = submit(live, NUMBER, redact_pii="true", redact_pii_policies="number", redact_pii_audio="true")
    result = job["result"]
    assert "[NUMBER]" in result["text"] and not says_number(result["text"]), result["text"]
    [span] = result["redactions"]
    assert span["policy"] == "number" and 0 < span["start"] < span["end"] < job["duration"]
    base = f"/api/transcribe/async/{job['task_id']}"
    for fmt in ("json", "verbose_json", "text", "srt", "vtt", "tsv"):
        body = live.get(f"{base}/result", params={"format": fmt}).text
        assert not says_number(body.replace(job["task_id"], "")) and "[NUMBER]" in body, fmt
    # Neither the stored result nor the cache ever held the number (token ids included).
    assert not says_number(str(live.redis.get(keys.job_result_key(job["task_id"]))))
    entries = _cache_entries(live)
    assert entries and not any(says_number(json.dumps([e["text"], e["segments"]])) for e in entries)
    assert all(seg["tokens"] == [] for e in entries for seg in e["segments"])

    audio = live.get(f"{base}/redacted-audio")
    assert audio.status_code == 200 and audio.headers["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content)) as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (16000, 1)
        redacted = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768
    original = decode_audio(NUMBER)
    assert len(redacted) == len(original)
    a, b = int(span["start"] * 16000), int(span["end"] * 16000)
    inside = redacted[a + 10:b - 10]
    spectrum = np.abs(np.fft.rfft(inside))
    assert abs(np.argmax(spectrum) * 16000 / len(inside) - 1000) < 20  # the tone
    assert np.abs(redacted[:a - 10] - original[:a - 10]).max() < 1e-3  # the rest as it was
    assert np.abs(redacted[b + 10:] - original[b + 10:]).max() < 1e-3

    # A cache hit decodes the upload anyway and tones it out from the cached spans.
    again = submit(live, NUMBER, redact_pii="true", redact_pii_policies="number", redact_pii_audio="true")
    assert again["cached"] is True
    assert live.get(f"/api/transcribe/async/{again['task_id']}/redacted-audio").content == audio.content

    # Without redact_pii_audio there is no audio to download; hashes through the sync route.
    with NUMBER.open("rb") as fh:
        sync = live.post("/api/transcribe?format=text", files={"file": fh},
                         data={"redact_pii": "true", "redact_pii_policies": "number", "redact_pii_sub": "hash"})
    assert sync.status_code == 200 and "##" in sync.text and not says_number(sync.text)
    assert live.get(f"/api/transcribe/async/{plain_id(live)}/redacted-audio").status_code == 409


def plain_id(live: Stack) -> str:
    jobs = live.get("/api/transcribe/async?limit=1").json()["jobs"]
    return str(jobs[0]["task_id"])


def test_multichannel_transcribes_each_channel_and_labels_it(live: Stack) -> None:
    stereo = shared_audio("stereo_diarization.wav")
    job = submit(live, stereo, multichannel="true")
    result = job["result"]
    assert result["channels"] == [1, 2] and job["chunks"] == 2
    heard = {c: " ".join(s["text"] for s in result["segments"] if s["channel"] == c) for c in (1, 2)}
    assert wer(WIZARD, heard[1]) <= 0.3, heard
    assert wer(HORIZON, heard[2]) <= 0.3, heard
    base = f"/api/transcribe/async/{job['task_id']}"
    text = live.get(f"{base}/result", params={"format": "text"}).text
    assert "Channel 1: " in text and "Channel 2: " in text
    cues = list(srt.parse(live.get(f"{base}/result", params={"format": "srt"}).text))
    assert {c.content.split("]")[0] for c in cues} == {"[Channel 1", "[Channel 2"}
    verbose = live.get(f"{base}/result", params={"format": "verbose_json"}).json()
    assert {s["channel"] for s in verbose["segments"]} == {1, 2} and verbose["channels"] == [1, 2]
    sentences = live.get(f"{base}/sentences").json()["sentences"]
    assert {s["channel"] for s in sentences} == {1, 2}
    # The channels are part of the cache key: the mixed recording is another transcript.
    mixed = submit(live, stereo)
    assert mixed["cached"] is False and "channels" not in mixed["result"]
    # Mono input is one channel.
    mono = submit(live, NUMBER, multichannel="true")
    assert mono["result"]["channels"] == [1]
    assert {s["channel"] for s in mono["result"]["segments"]} == {1}


def _stored_files(live: Stack) -> set[Path]:
    return {p for p in live.settings.upload_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("form, field", [
    ({"custom_spelling": '{"from": ["a"], "to": "b"}'}, "custom_spelling"),
    ({"custom_spelling": "not json"}, "custom_spelling"),
    ({"redact_pii": "true", "redact_pii_policies": "email_address,passport"}, "redact_pii_policies"),
    ({"redact_pii": "true", "redact_pii_sub": "stars"}, "redact_pii_sub"),
    ({"redact_pii_audio": "true"}, "redact_pii_audio"),
    ({"multichannel": "true", "diarize": "true"}, "multichannel"),
    ({"multichannel": "perhaps"}, "multichannel"),
])
def test_bad_values_are_a_422_naming_the_field_and_leave_no_job(
        live: Stack, form: dict[str, str], field: str) -> None:
    jobs_before = {j["task_id"] for j in live.get("/api/transcribe/async?limit=100").json()["jobs"]}
    files_before = _stored_files(live)
    for route in ("/api/transcribe/async", "/api/transcribe", "/v1/audio/transcriptions"):
        with NUMBER.open("rb") as fh:
            answer = live.post(route, files={"file": fh}, data=form)
        assert answer.status_code == 422, (route, answer.text)
        assert answer.json()["error"]["field"] == field, (route, answer.json())
    with NUMBER.open("rb") as fh:
        answer = live.post("/api/transcribe?format=json&chars_per_caption=20", files={"file": fh})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "chars_per_caption"
    jobs_after = {j["task_id"] for j in live.get("/api/transcribe/async?limit=100").json()["jobs"]}
    assert jobs_after == jobs_before
    assert _stored_files(live) == files_before
