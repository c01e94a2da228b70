"""The whole service, end to end: real gunicorn, real Dramatiq workers, Redis and RabbitMQ."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import srt
import webvtt

from pipeline import keys
from tests.support.helpers import (
    JFK_TEXT,
    SPEECH_EN,
    SPEECH_EN_TEXT,
    make_video,
    silent_wav_header,
    wer,
)
from tests.support.stack import Stack


def submit(stack: Stack, path: Path, name: str | None = None, **form: str) -> dict[str, object]:
    with path.open("rb") as fh:
        response = stack.post("/api/transcribe/async", files={"file": (name or path.name, fh)}, data=form)
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


def test_async_upload_runs_the_whole_pipeline(live: Stack, jfk: Path) -> None:
    accepted = submit(live, jfk)
    task_id = str(accepted["task_id"])
    assert accepted["status"] == "queued" and accepted["cached"] is False
    assert str(accepted["status_url"]).endswith(f"/api/transcribe/async/status/{task_id}")
    assert str(accepted["result_url"]).endswith(f"/api/transcribe/async/{task_id}/result")

    body = live.wait_final(task_id)
    assert body["status"] == "completed", body
    assert body["stage"] == "done" and body["progress"] == 1.0
    assert body["engine"] == "faster-whisper" and body["model"] == "tiny.en"
    assert body["device"] == "cpu" and body["language"] == "en"
    assert body["duration"] == pytest.approx(11.0, abs=0.1)
    assert body["created_at"] <= body["started_at"] <= body["finished_at"]  # type: ignore[operator]
    result = body["result"]
    assert isinstance(result, dict)
    assert wer(JFK_TEXT, result["text"]) <= 0.10

    history = [json.loads(x) for x in live.redis.lrange(keys.job_history_key(task_id), 0, -1)]
    assert [h["status"] for h in history] == ["queued", "extracting", "transcribing", "completed"]
    stamps = [h["at"] for h in history]
    assert stamps == sorted(stamps)
    # The upload was stored under the task id and is gone once the job is final.
    assert not (live.settings.upload_dir / "jobs" / task_id).exists()
    assert live.redis.hget(keys.job_key(task_id), "sha256") == hashlib.sha256(jfk.read_bytes()).hexdigest()
    assert live.redis.hget(keys.job_key(task_id), "upload_path") == f"{live.settings.upload_dir}/jobs/{task_id}/upload"


def test_every_result_format(live: Stack, jfk: Path) -> None:
    task_id = str(submit(live, jfk)["task_id"])
    assert live.wait_final(task_id)["status"] == "completed"
    base = f"/api/transcribe/async/{task_id}/result"

    as_json = live.get(base)
    assert as_json.headers["Content-Type"] == "application/json"
    assert wer(JFK_TEXT, as_json.json()["text"]) <= 0.10
    assert [s["id"] for s in as_json.json()["segments"]] == list(range(len(as_json.json()["segments"])))

    text = live.get(base, params={"format": "text"})
    assert text.headers["Content-Type"].startswith("text/plain")
    assert wer(JFK_TEXT, text.text) <= 0.10

    subtitles = live.get(base, params={"format": "srt"})
    assert subtitles.headers["Content-Type"].startswith("application/x-subrip")
    cues = list(srt.parse(subtitles.text, ignore_errors=False))
    assert cues and cues[-1].end.total_seconds() == pytest.approx(11.0, abs=0.5)
    assert wer(JFK_TEXT, " ".join(c.content for c in cues)) <= 0.10

    vtt = live.get(base, params={"format": "vtt"})
    assert vtt.headers["Content-Type"].startswith("text/vtt")
    captions = webvtt.from_buffer(io.StringIO(vtt.text)).captions
    assert len(captions) == len(cues)
    assert wer(JFK_TEXT, " ".join(c.text for c in captions)) <= 0.10

    inline = live.get(base, params={"format": "srt"}).headers["Content-Disposition"]
    assert inline.startswith("inline;") and 'filename="jfk.srt"' in inline
    saved = live.get(base, params={"format": "text", "download": "true"}).headers["Content-Disposition"]
    assert saved.startswith("attachment;") and 'filename="jfk.txt"' in saved

    bad = live.get(base, params={"format": "docx"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"


def test_sync_endpoint_waits_for_the_pipeline(live: Stack, jfk: Path) -> None:
    with jfk.open("rb") as fh:
        response = live.post("/api/transcribe", params={"format": "text"}, files={"file": fh})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    assert wer(JFK_TEXT, response.text) <= 0.10

    with jfk.open("rb") as fh:
        response = live.post("/api/transcribe", files={"file": fh}, data={"response_format": "srt"})
    assert response.status_code == 200
    assert list(srt.parse(response.text))


def test_own_fixture_in_a_video_container(live: Stack, tmp_path: Path) -> None:
    # Judged by content: the name says nothing about the format.
    video = make_video(tmp_path / "clip.mp4", SPEECH_EN)
    with video.open("rb") as fh:
        response = live.post("/api/transcribe", files={"file": ("recording.dat", fh)})
    assert response.status_code == 200, response.text
    assert wer(SPEECH_EN_TEXT, response.json()["text"]) <= 0.15


def test_progress_and_segments_are_published_while_running(live: Stack) -> None:
    pubsub = live.redis.pubsub(ignore_subscribe_messages=True)
    accepted_id = None
    # Subscribing needs the id, which exists only after the upload: listen to every job instead.
    pubsub.psubscribe(keys.events_channel("*"))
    try:
        accepted_id = str(submit(live, SPEECH_EN)["task_id"])
        events = []
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, f"job not completed within 60 s: {events}"
            # None also stands for an ignored subscribe confirmation, so it is no time-out.
            message = pubsub.get_message(timeout=1)
            if message is None or accepted_id not in message["channel"]:
                continue
            event = json.loads(message["data"])
            events.append(event)
            if event["type"] == "status" and event["status"] == "completed":
                break
    finally:
        pubsub.close()
    statuses = [e["status"] for e in events if e["type"] == "status"]
    # Stage changes within a state are published too (cache-lookup, waiting-for-transcriber).
    changes = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert changes == ["extracting", "transcribing", "completed"]
    stages_seen = [e["stage"] for e in events if e["type"] == "status"]
    assert {"extracting", "cache-lookup", "waiting-for-transcriber", "transcribing", "done"} <= set(stages_seen)
    segments = [e for e in events if e["type"] == "segment"]
    assert segments, "segments are published as they are decoded"
    progress = [e["progress"] for e in segments]
    assert progress == sorted(progress) and 0 < progress[-1] < 1
    first_transcribing = next(i for i, e in enumerate(events) if e.get("status") == "transcribing")
    assert events.index(segments[0]) > first_transcribing


def test_bad_input_gets_clear_answers_and_the_worker_goes_on(live: Stack, tmp_path: Path) -> None:
    no_file = live.post("/api/transcribe/async", data={"language": "en"})
    assert no_file.status_code == 400
    assert no_file.json()["error"]["field"] == "file"

    empty = live.post("/api/transcribe/async", files={"file": ("a.wav", b"")})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]

    text = live.post("/api/transcribe/async", files={"file": ("notes.mp3", b"just some words\n" * 50)})
    assert text.status_code == 415
    assert text.json()["error"]["code"] == "unsupported_media"

    noise = live.post("/api/transcribe/async", files={"file": ("noise.mp3", os.urandom(64_000))})
    assert noise.status_code == 415

    silent_video = make_video(tmp_path / "silent.mp4", None)
    no_audio = live.post("/api/transcribe/async", files={"file": silent_video.read_bytes()})
    assert no_audio.status_code == 415
    assert no_audio.json()["error"] == {
        "code": "no_audio_stream", "message": "The file has no audio track to transcribe."}

    bad_option = live.post("/api/transcribe/async", files={"file": SPEECH_EN.read_bytes()},
                           data={"engine": "whisperx"})
    assert bad_option.status_code == 422 and bad_option.json()["error"]["field"] == "engine"
    unknown = live.post("/api/transcribe/async", files={"file": SPEECH_EN.read_bytes()},
                        data={"colour": "blue"})
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "colour"

    for path in ("/api/transcribe/async/status/0123", "/api/transcribe/async/0123/result"):
        missing = live.get(path)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    # A header that opens but holds no audio gets past the upload check and fails in the worker.
    hollow = submit(live, silent_wav_header(tmp_path / "hollow.wav"))
    failed = live.wait_final(str(hollow["task_id"]))
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "media_decode_error",
                               "message": "No audio could be decoded from the file."}
    not_ready = live.get(f"/api/transcribe/async/{hollow['task_id']}/result")
    assert not_ready.status_code == 409 and "No audio" in not_ready.json()["error"]["message"]
    with silent_wav_header(tmp_path / "hollow2.wav").open("rb") as fh:
        sync_failed = live.post("/api/transcribe", files={"file": fh})
    assert sync_failed.status_code == 422
    assert sync_failed.json()["error"]["code"] == "media_decode_error"

    # Nothing crashed: the next good file goes straight through.
    good = submit(live, SPEECH_EN)
    done = live.wait_final(str(good["task_id"]))
    assert done["status"] == "completed"
    assert not list(live.settings.upload_dir.glob("*.upload"))


def test_health_and_gpu_status_come_from_worker_heartbeats(live: Stack) -> None:
    # Only this stack's workers count: another test session on the machine may share Redis.
    def ours() -> list[dict[str, Any]]:
        # The stack's processes now: a test may have started one of them again (a new pid).
        assert live.service is not None
        processes = live.service.pids()
        workers = live.get("/api/gpu-status").json()["workers"]
        return [w for w in workers if w["pid"] in processes]

    # Every Procfile process beats: the extract/notify worker, the transcriber, the diarizer, live.
    deadline = time.monotonic() + 20
    while len(ours()) < 4:
        assert time.monotonic() < deadline, live.get("/api/gpu-status").json()
        time.sleep(0.2)
    body = live.get("/api/health").json()
    assert body["status"] == "ok" and body["redis"] == "ok" and body["rabbitmq"] == "ok"
    assert body["workers"] >= 4 and body["queues_served"] == ["diarize", "extract", "live", "notify", "transcribe"]

    gpu = live.get("/api/gpu-status").json()
    assert gpu["gpu_count"] == 0 and gpu["cuda_workers"] == 0
    workers = sorted(ours(), key=lambda w: w["queues"])
    assert [w["queues"] for w in workers] == [["diarize"], ["extract", "notify"], ["live"], ["transcribe"]]
    for worker in workers:
        assert worker["device"] == "cpu" and worker["device_reason"] == "DEVICE=cpu"
        assert worker["gpus"] == [] and worker["pid"] > 0 and worker["host"]
    # The transcriber has done jobs in earlier tests of this session and keeps its model loaded.
    transcriber = workers[3]
    if transcriber["jobs_done"]:
        assert any(m.startswith("faster-whisper:tiny.en:cpu") for m in transcriber["models"])


def test_openai_engine_through_the_service_with_every_format(live: Stack) -> None:
    accepted = submit(live, SPEECH_EN, engine="openai-whisper", word_timestamps="true")
    task_id = str(accepted["task_id"])
    body = live.wait_final(task_id)
    assert body["status"] == "completed", body
    assert body["engine"] == "openai-whisper" and body["device"] == "cpu"
    base = f"/api/transcribe/async/{task_id}/result"

    verbose = live.get(base, params={"format": "verbose_json"}).json()
    assert verbose["task"] == "transcribe" and verbose["language"] == "en"
    assert verbose["duration"] == pytest.approx(5.9, abs=0.2)
    assert wer(SPEECH_EN_TEXT, verbose["text"]) <= 0.15
    fields = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
              "compression_ratio", "no_speech_prob"}
    assert verbose["segments"] and all(set(s) == fields for s in verbose["segments"])
    assert verbose["words"] and {"word", "start", "end"} == set(verbose["words"][0])

    tsv = live.get(base, params={"format": "tsv"})
    assert tsv.headers["Content-Type"].startswith("text/tab-separated-values")
    rows = [line.split("\t") for line in tsv.text.splitlines()]
    assert rows[0] == ["start", "end", "text"]
    assert all(int(r[0]) < int(r[1]) for r in rows[1:])
    assert wer(SPEECH_EN_TEXT, " ".join(r[2] for r in rows[1:])) <= 0.15


def test_job_list_newest_first_with_filter_and_cursor(live: Stack, tmp_path: Path) -> None:
    ids = [str(submit(live, SPEECH_EN, beam_size=str(n))["task_id"]) for n in (1, 2, 3)]
    bad = submit(live, silent_wav_header(tmp_path / "h.wav"))
    for task_id in [*ids, str(bad["task_id"])]:
        live.wait_final(task_id)
    first = live.get("/api/transcribe/async", params={"limit": 2}).json()
    assert [j["task_id"] for j in first["jobs"]] == [bad["task_id"], ids[2]]
    assert first["next_cursor"]
    second = live.get("/api/transcribe/async", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [j["task_id"] for j in second["jobs"]] == [ids[1], ids[0]]
    failed = live.get("/api/transcribe/async", params={"status": "failed", "limit": 5}).json()
    assert bad["task_id"] in [j["task_id"] for j in failed["jobs"]]
    assert all(j["status"] == "failed" for j in failed["jobs"])
    for params, field in (({"status": "done"}, "status"), ({"limit": "0"}, "limit"),
                          ({"cursor": "abc"}, "cursor")):
        response = live.get("/api/transcribe/async", params=params)
        assert response.status_code == 422 and response.json()["error"]["field"] == field


def test_events_stream_states_progress_and_segments(live: Stack) -> None:
    task_id = str(submit(live, SPEECH_EN, beam_size="4")["task_id"])
    response = requests.get(f"{live.url}/api/transcribe/async/{task_id}/events", stream=True, timeout=60)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events: list[tuple[str, dict[str, object]]] = []
    name = None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            events.append((name, json.loads(line[6:])))
    kinds = [n for n, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "end"
    assert "segment" in kinds
    assert events[-1][1]["status"] == "completed"
    statuses = [e["status"] for n, e in events if n == "status"]
    assert statuses[-1] == "completed" and statuses == sorted(
        statuses, key=["queued", "extracting", "transcribing", "completed"].index)
    # A late subscriber gets where the job stands, segments included, then the end.
    late = requests.get(f"{live.url}/api/transcribe/async/{task_id}/events", timeout=30).text
    assert "event: status" in late and "event: segment" in late and late.rstrip().split("\n")[-2] == "event: end"
    assert live.get("/api/transcribe/async/nope/events").status_code == 404


def test_metrics_in_prometheus_format(live: Stack) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    done = live.wait_final(str(submit(live, SPEECH_EN, beam_size="2")["task_id"]))
    assert done["status"] == "completed"
    response = live.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}

    def value(name: str, **labels: str) -> float:
        for family in families.values():
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        raise AssertionError(f"no sample {name} {labels}")

    assert value("whisper_jobs_total", state="completed") >= 1
    assert value("whisper_jobs_total", state="queued") >= value("whisper_jobs_total", state="completed")
    assert value("whisper_audio_seconds_transcribed_total") >= 5.0
    transcribing = [s for s in families["whisper_state_duration_seconds"].samples
                    if s.labels.get("state") == "transcribing"]
    count = next(s.value for s in transcribing if s.name.endswith("_count"))
    assert count >= 1 and next(s.value for s in transcribing if s.name.endswith("_sum")) > 0
    assert value("whisper_queue_depth", queue="transcribe") >= 0
    assert value("whisper_workers", queue="transcribe", device="cpu") >= 1
    assert "whisper_cache_hits_total" in response.text and "whisper_webhook_deliveries_total" in response.text


def test_worker_logs_are_json_with_the_task_id(live: Stack) -> None:
    task_id = str(submit(live, SPEECH_EN, beam_size="3")["task_id"])
    assert live.wait_final(task_id)["status"] == "completed"
    time.sleep(0.5)  # the worker's log pipe flushes on its own schedule
    lines = []
    for line in (live.logs / "transcriber.log").read_text().splitlines():
        start = line.find("{")
        if start >= 0:
            try:
                lines.append(json.loads(line[start:]))
            except ValueError:
                continue
    about = [entry for entry in lines if entry.get("task_id") == task_id]
    assert about, "lines logged while transcribing carry the task id"
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in about)


def test_long_recording_is_transcribed_in_chunks(live: Stack, tmp_path: Path) -> None:
    from tests.support.helpers import long_speech

    task_id = str(submit(live, long_speech(tmp_path / "long.wav", 25))["task_id"])
    seen_chunks = None
    deadline = time.monotonic() + 180
    while True:
        body = live.get(f"/api/transcribe/async/status/{task_id}").json()
        seen_chunks = seen_chunks or body.get("chunks")
        if body["status"] in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert body["status"] == "completed", body
    assert (seen_chunks or body["chunks"]) >= 2
    segments = body["result"]["segments"]
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    assert wer(" ".join([SPEECH_EN_TEXT] * 25), body["result"]["text"]) <= 0.2
    history = [json.loads(x)["status"] for x in live.redis.lrange(keys.job_history_key(task_id), 0, -1)]
    assert history.count("completed") == 1
