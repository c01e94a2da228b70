"""Speaker diarization as a stage of the pipeline: options, the parallel `diarize` stage and its
merge with the transcription, every format, failure, cancellation mid-diarization, and the
Procfile's diarizer (a process serving only the `diarize` queue).

Real services throughout: Redis, RabbitMQ, the real models (tiny.en and the diarization
models), recordings spoken by two espeak-ng voices at test time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import time
import wave
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import requests
import srt
import webvtt

from bench.der import diarization_error_rate
from bench.diarization_set import espeak_conversation
from pipeline.errors import DiarizationError
from pipeline.jobs import DIARIZE_PART, TRANSCRIBE_PART, State, new_task_id
from pipeline.keys import job_key
from pipeline.options import TranscribeOptions
from pipeline.queues import CHUNK_ACTOR, DIARIZE_ACTOR, TRANSCRIBE_ACTOR
from pipeline.speakers import parse_rttm
from pipeline.uploads import upload_path
from pipeline.worker import stages
from pipeline.worker.context import Context
from pipeline.worker.diarization import Turn
from pipeline.worker.reconciler import next_messages
from pipeline.worker.stages import Next
from pipeline.workers import live_workers
from tests.support.browser import browser_page, download
from tests.support.stack import Stack

SR = 16_000
DIALOGUE = [
    ("A", "Good morning, thank you for joining the meeting today."),
    ("B", "Thanks for having me, I am glad to be here."),
    ("A", "Let us start with the budget for the next quarter."),
    ("B", "The numbers look fine, but travel costs went up."),
]
# Long enough that diarizing it takes several batches of the embedding model.
LONG_DIALOGUE = DIALOGUE * 5
DIARIZED = TranscribeOptions(diarize=True)


def write_wav(path: Path, audio: np.ndarray) -> Path:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SR)
        out.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng; `make test` does)")
    return tmp_path_factory.mktemp("voices")


@pytest.fixture(scope="module")
def two_voices(voices: Path) -> tuple[Path, tuple[Turn, ...]]:
    """About 14 s: two espeak-ng voices taking turns, with the reference turns."""
    audio, reference = espeak_conversation(DIALOGUE, voices)
    return write_wav(voices / "two-voices.wav", audio), reference


@pytest.fixture(scope="module")
def long_two_voices(voices: Path) -> Path:
    audio, _ = espeak_conversation(LONG_DIALOGUE, voices)
    return write_wav(voices / "long-two-voices.wav", audio)


# -- in-process: the stages against the real Redis, store and models ------------------------
def submit(ctx: Context, source: Path, options: TranscribeOptions = DIARIZED) -> str:
    task_id = new_task_id()
    target = upload_path(ctx.settings.upload_dir, task_id)
    shutil.copy(source, target)
    ctx.jobs.create(task_id, options, sha256=hashlib.sha256(target.read_bytes()).hexdigest(),
                    upload_path=str(target))
    return task_id


def test_parts_merge_once_whichever_ends_last(ctx: Context, two_voices: tuple[Path, tuple[Turn, ...]]) -> None:
    import torch

    task_id = submit(ctx, two_voices[0])
    assert stages.extract(ctx, task_id) is Next.TRANSCRIBE
    # Diarization first: it stores its part, names what still runs, and waits. It runs on
    # DIARIZE_THREADS (1), not on torch's every core, whatever the process had before.
    torch.set_num_threads(2)
    assert stages.diarize(ctx, task_id) is None
    assert torch.get_num_threads() == ctx.settings.diarize_threads == 1
    job = ctx.jobs.get(task_id)
    assert job.status == State.TRANSCRIBING and job.stage == "transcribe"
    assert 0.5 <= job.progress < 1.0  # the diarize half is done
    assert set(ctx.jobs.parts(task_id)) == {DIARIZE_PART}
    # A redelivered diarize message finds its part stored and does nothing more.
    assert stages.diarize(ctx, task_id) is None
    # The transcription ends last: it merges and completes the job.
    assert stages.transcribe(ctx, task_id) is Next.NOTIFY
    job = ctx.jobs.get(task_id)
    assert job.status == State.COMPLETED and job.progress == 1.0 and not job.warnings
    result = ctx.jobs.result(task_id)
    assert result is not None
    assert [s.id for s in result.speakers] == ["SPEAKER_00", "SPEAKER_01"]
    assert all(s.speaker in ("SPEAKER_00", "SPEAKER_01") for s in result.segments)
    assert all(s.words is None for s in result.segments)  # computed for the merge, not asked for
    # Redelivered after the end: neither part completes the job twice.
    assert stages.transcribe(ctx, task_id) is None
    assert stages.diarize(ctx, task_id) is None
    assert [h["status"] for h in ctx.jobs.history(task_id)].count("completed") == 1
    # The merged result is what the cache keeps for these options.
    cached = ctx.cache.get(job.sha256, DIARIZED)
    assert cached is not None and cached.speakers == result.speakers


def test_a_chunked_recording_merges_its_chunks_then_its_speakers(ctx: Context, long_two_voices: Path) -> None:
    local = dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, long_audio_seconds=30, chunk_seconds=20, split_min_seconds=0))
    task_id = submit(local, long_two_voices, TranscribeOptions(diarize=True, word_timestamps=True))
    assert stages.extract(local, task_id) is Next.CHUNKS
    job = local.jobs.get(task_id)
    assert len(job.chunks) >= 3
    # The chunks end first, then the speakers: the merge waits for both.
    outcomes = [stages.transcribe_chunk(local, task_id, index) for index in range(len(job.chunks))]
    assert outcomes == [None] * len(job.chunks)
    assert local.jobs.get(task_id).stage == "diarize"
    assert stages.diarize(local, task_id) is Next.NOTIFY
    result = local.jobs.result(task_id)
    assert result is not None and local.jobs.get(task_id).status == State.COMPLETED
    assert [s.id for s in result.speakers] == ["SPEAKER_00", "SPEAKER_01"]
    # Speakers follow the merged, continuous timeline: both speak in the first and the last chunk.
    first, last = job.chunks[0][1] / SR, job.chunks[-1][0] / SR
    assert {s.speaker for s in result.segments if s.end <= first} == {"SPEAKER_00", "SPEAKER_01"}
    assert {s.speaker for s in result.segments if s.start >= last} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(w.speaker is not None for s in result.segments for w in s.words or ())
    assert [s.id for s in result.segments] == list(range(len(result.segments)))


@pytest.mark.parametrize("policy", ["fail", "ignore"])
def test_a_failed_diarization_fails_the_job_or_is_ignored(
    ctx: Context, two_voices: tuple[Path, tuple[Turn, ...]], policy: str
) -> None:
    local = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, diarize_failure=policy))
    options = TranscribeOptions(diarize=True, max_speakers=2 if policy == "fail" else 3)  # no cache hits
    task_id = submit(local, two_voices[0], options)
    assert stages.extract(local, task_id) is Next.TRANSCRIBE
    assert stages.transcribe(local, task_id) is None  # waits for the speakers
    assert stages.diarize_failed(local, task_id, DiarizationError("The diarization models could not be loaded: "
                                                                  "no such file")) is Next.NOTIFY
    job = local.jobs.get(task_id)
    if policy == "fail":
        assert job.status == State.FAILED
        assert job.error is not None and job.error["code"] == "diarization_error"
        assert "could not be loaded" in job.error["message"]
        return
    assert job.status == State.COMPLETED
    assert len(job.warnings) == 1 and "Speakers were not found" in job.warnings[0]
    result = local.jobs.result(task_id)
    assert result is not None and result.text.strip() and not result.speakers
    assert local.cache.get(job.sha256, options) is None  # a result without speakers is not kept


def test_the_reconciler_sends_the_parts_that_are_missing(ctx: Context) -> None:
    task_id = new_task_id()
    ctx.jobs.create(task_id, DIARIZED)
    ctx.jobs.transition(task_id, State.TRANSCRIBING)
    both = [(TRANSCRIBE_ACTOR, (task_id,)), (DIARIZE_ACTOR, (task_id,))]
    assert next_messages(ctx, ctx.jobs.get(task_id)) == both
    ctx.jobs.save_part(task_id, DIARIZE_PART, {"turns": []}, (TRANSCRIBE_PART, DIARIZE_PART))
    assert next_messages(ctx, ctx.jobs.get(task_id)) == [(TRANSCRIBE_ACTOR, (task_id,))]
    ctx.jobs.set_fields(task_id, chunks="[[0, 100], [100, 200]]")
    assert next_messages(ctx, ctx.jobs.get(task_id)) == [(CHUNK_ACTOR, (task_id, 0)), (CHUNK_ACTOR, (task_id, 1))]
    ctx.jobs.save_part(task_id, TRANSCRIBE_PART, {"transcript": {}}, (TRANSCRIBE_PART, DIARIZE_PART))
    # Both stored, never merged: diarize's message merges.
    assert next_messages(ctx, ctx.jobs.get(task_id)) == [(DIARIZE_ACTOR, (task_id,))]


# -- the real stack ---------------------------------------------------------------------------
def post(stack: Stack, path: str, audio: Path, **form: Any) -> requests.Response:
    with audio.open("rb") as fh:
        return stack.post(path, files={"file": (audio.name, fh, "audio/wav")}, data=form)


@pytest.mark.parametrize(("path", "form", "field"), [
    ("/api/transcribe/async", {"diarize": "true", "min_speakers": "3", "max_speakers": "2"}, "min_speakers"),
    ("/api/transcribe/async", {"min_speakers": "2"}, "min_speakers"),
    ("/api/transcribe/async", {"diarize": "true", "max_speakers": "0"}, "max_speakers"),
    ("/api/transcribe", {"diarize": "true", "min_speakers": "4", "max_speakers": "1"}, "min_speakers"),
    ("/v1/audio/transcriptions", {"response_format": "diarized_json", "min_speakers": "5", "max_speakers": "2"},
     "min_speakers"),
    ("/v1/audio/translations", {"response_format": "diarized_json"}, "response_format"),
])
def test_bad_speaker_options_are_422_naming_the_field(
    live: Stack, two_voices: tuple[Path, tuple[Turn, ...]], path: str, form: dict[str, str], field: str
) -> None:
    response = post(live, path, two_voices[0], **form)
    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json()["error"])


def test_a_diarized_job_through_the_api_in_every_format(
    live: Stack, two_voices: tuple[Path, tuple[Turn, ...]]
) -> None:
    audio, reference = two_voices
    response = post(live, "/api/transcribe/async", audio, diarize="true", word_timestamps="true")
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    stages_seen: set[str] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = live.get(f"/api/transcribe/async/status/{task_id}").json()
        stages_seen.add(status["stage"])
        if status["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert status["status"] == "completed", status
    assert status["progress"] == 1.0 and "warnings" not in status
    # While both ran the stage named both; nothing but "transcribe"/"diarize" parts in between.
    assert stages_seen <= {"queued", "extracting", "cache-lookup", "waiting-for-transcriber", "transcribing",
                           "transcribe+diarize", "transcribe", "diarize", "done"}, stages_seen
    raw = cast(list[str], live.redis.lrange(f"{job_key(task_id)}:history", 0, -1))
    history = [json.loads(h)["status"] for h in raw]
    assert history == ["queued", "extracting", "transcribing", "completed"]

    result = status["result"]
    speakers = {s["id"]: s["talk_time"] for s in result["speakers"]}
    assert set(speakers) == {"SPEAKER_00", "SPEAKER_01"}
    assert all(t > 2.0 for t in speakers.values())
    assert {s["speaker"] for s in result["segments"]} == set(speakers)

    def fetch(fmt: str) -> requests.Response:
        got = live.get(f"/api/transcribe/async/{task_id}/result?format={fmt}")
        assert got.status_code == 200, (fmt, got.text)
        return got

    body = fetch("json").json()
    assert [s["id"] for s in body["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    verbose = fetch("verbose_json").json()
    assert all(s["speaker"] in speakers for s in verbose["segments"])
    assert verbose["words"] and all(w["speaker"] in speakers for w in verbose["words"])

    lines = fetch("text").text.strip().splitlines()
    assert len(lines) >= 2 and all(line.split(":", 1)[0] in speakers for line in lines)
    assert lines[0].startswith("SPEAKER_00: ") and any(line.startswith("SPEAKER_01: ") for line in lines)

    cues = list(srt.parse(fetch("srt").text))
    assert cues and all(c.content.split("]", 1)[0].lstrip("[") in speakers for c in cues)
    assert all(c.content.startswith("[SPEAKER_0") for c in cues)

    vtt = fetch("vtt")
    assert vtt.headers["Content-Type"].startswith("text/vtt")
    captions = webvtt.read_buffer(io.StringIO(vtt.text)).captions
    assert len(captions) == len(cues)
    assert all(c.raw_text.startswith("<v SPEAKER_0") for c in captions)
    assert {c.voice for c in captions} == set(speakers)

    tsv = fetch("tsv").text.splitlines()
    assert tsv[0] == "start\tend\ttext\tspeaker" and all(row.split("\t")[3] in speakers for row in tsv[1:])

    rttm = fetch("rttm")
    assert rttm.headers["Content-Type"].startswith("text/plain")
    assert 'filename="two-voices.rttm"' in rttm.headers["Content-Disposition"]
    turns = parse_rttm(rttm.text)
    assert {t.speaker for t in turns} == set(speakers)
    assert all(line.split()[1] == "two-voices" for line in rttm.text.splitlines())
    # The segments stand in for the turns, so words and pauses blur them a little.
    assert diarization_error_rate(list(reference), turns) < 0.25

    # The same options are answered from the cache now, speakers included.
    again = post(live, "/api/transcribe/async", audio, diarize="true", word_timestamps="true").json()
    assert again["cached"] is True and again["status"] == "completed"


def test_rttm_needs_a_diarized_job(live: Stack, two_voices: tuple[Path, tuple[Turn, ...]]) -> None:
    task_id = post(live, "/api/transcribe/async", two_voices[0]).json()["task_id"]
    assert live.wait_final(task_id)["status"] == "completed"
    got = live.get(f"/api/transcribe/async/{task_id}/result?format=rttm")
    assert got.status_code == 422 and got.json()["error"]["field"] == "format"
    assert "diarize=true" in got.json()["error"]["message"]


def test_the_sync_and_openai_routes_diarize(live: Stack, two_voices: tuple[Path, tuple[Turn, ...]]) -> None:
    sync = post(live, "/api/transcribe?format=rttm", two_voices[0], diarize="true", max_speakers="2")
    assert sync.status_code == 200, sync.text
    assert {t.speaker for t in parse_rttm(sync.text)} == {"SPEAKER_00", "SPEAKER_01"}

    openai = post(live, "/v1/audio/transcriptions", two_voices[0], response_format="diarized_json",
                  model="whisper-1")
    assert openai.status_code == 200, openai.text
    body = openai.json()
    assert set(body) == {"task", "duration", "text", "segments"}
    assert body["task"] == "transcribe" and body["duration"] > 10 and body["text"].strip()
    assert body["segments"]
    for segment in body["segments"]:
        assert set(segment) == {"type", "id", "start", "end", "text", "speaker"}
        assert segment["type"] == "transcript.text.segment" and isinstance(segment["id"], str)
        assert segment["start"] <= segment["end"]
    assert {s["speaker"] for s in body["segments"]} == {"SPEAKER_00", "SPEAKER_01"}


def test_the_diarizer_serves_only_diarize_beside_the_transcriber(
    live: Stack, two_voices: tuple[Path, tuple[Turn, ...]]
) -> None:
    workers = live_workers(live.redis)  # the heartbeats, as /api/health reads them
    assert [w["queues"] for w in workers if "diarize" in w["queues"]] == [["diarize"]]
    assert all("diarize" not in w["queues"] for w in workers if "transcribe" in w["queues"])
    task_id = post(live, "/api/transcribe/async", two_voices[0], diarize="true", min_speakers="2").json()["task_id"]
    assert live.wait_final(task_id)["status"] == "completed"
    # The speakers were found in the diarizer's process, the words in the transcriber's.
    diarizer = (live.logs / "diarizer.log").read_text(errors="replace")
    transcriber = (live.logs / "transcriber.log").read_text(errors="replace")
    assert any(task_id in line and "speakers in" in line for line in diarizer.splitlines())
    assert not any(task_id in line and "speakers in" in line for line in transcriber.splitlines())


def test_cancelling_mid_diarization_stops_it(live: Stack, long_two_voices: Path) -> None:
    task_id = post(live, "/api/transcribe/async", long_two_voices, diarize="true").json()["task_id"]
    key = job_key(task_id)
    deadline = time.monotonic() + 180
    seen = 0.0
    while time.monotonic() < deadline:
        seen = float(cast(str | None, live.redis.hget(key, "progress_diarize")) or 0)
        if 0 < seen < 0.9:
            break
        assert live.redis.hget(key, "status") not in ("completed", "failed"), "diarization was never seen running"
        time.sleep(0.02)
    assert 0 < seen < 0.9, f"diarization was never seen half-way (progress {seen})"
    response = live.session_delete(f"/api/transcribe/async/{task_id}")
    assert response.status_code == 202, response.text
    assert live.wait_final(task_id)["status"] == "cancelled"
    # The diarizer stops at its next batch: its lease goes, and it never stores the speakers.
    deadline = time.monotonic() + 60
    while live.redis.exists(f"{key}:lease:diarize") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not live.redis.exists(f"{key}:lease:diarize")
    assert DIARIZE_PART not in cast(list[str], live.redis.hkeys(f"{key}:parts"))
    log = (live.logs / "diarizer.log").read_text(errors="replace")
    assert any(task_id in line and "cancelled during diarize" in line for line in log.splitlines())


def test_the_page_asks_for_speakers_and_shows_them(live: Stack, chromium: Any,
                                                   two_voices: tuple[Path, tuple[Turn, ...]]) -> None:
    from playwright.sync_api import expect

    with browser_page(chromium, live) as page:
        page.goto("/")
        page.set_input_files("#file", str(two_voices[0]))
        page.get_by_label("Speakers").check()
        page.get_by_role("button", name="Transcribe").click()
        expect(page.locator("#status")).to_have_text("Done.", timeout=120_000)
        labels = page.locator("#segments .speaker").all_inner_texts()
        assert set(labels) == {"SPEAKER_00", "SPEAKER_01"}
        assert page.locator("#segments li").count() == len(labels)
        expect(page.locator("#job-meta")).to_contain_text("2 speakers")
        expect(page.locator("#dl-rttm")).to_be_visible()
        name, rttm = download(page, "#dl-rttm")
        assert name == "two-voices.rttm"
        assert {t.speaker for t in parse_rttm(rttm)} == {"SPEAKER_00", "SPEAKER_01"}
