"""Failures of the service's parts while jobs run: a killed transcriber, a restarted broker, a
restarted Redis, a flaky webhook receiver and messages delivered again. Every test asserts the
jobs' real outcomes (state, history, transcript), not only that nothing crashed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from pipeline import keys, queues, rabbitmq
from pipeline.keys import COUNTERS_KEY
from pipeline.workers import live_workers
from tests.chaos.conftest import (
    TIMINGS,
    Chaos,
    children_of,
    history_is_sane,
    unique_speech,
    wait_until,
)
from tests.support.helpers import SPEECH_EN_TEXT, Receiver, long_speech, normalise, wer
from tests.support.stack import WEBHOOK_SECRET


def transcriber_worker_pid(chaos: Chaos) -> int:
    """The Dramatiq worker process (the transcriber main's child) that heartbeats for the
    ``transcribe`` queue."""
    main = chaos.service.pid("transcriber")
    beating = {int(w["pid"]) for w in live_workers(chaos.redis) if "transcribe" in w.get("queues", [])}
    found = [pid for pid in children_of(main) if pid in beating]
    assert len(found) == 1, f"children of {main}: {children_of(main)}, heartbeats: {beating}"
    return found[0]


def assert_one_completion(chaos: Chaos, task_id: str) -> list[str]:
    history = chaos.history(task_id)
    states = [h["status"] for h in history]
    assert history_is_sane(history), states
    assert states.count("completed") == 1, states
    return states


@pytest.mark.timeout(420)
def test_killed_transcriber_process_job_completes_exactly_once(chaos: Chaos, tmp_path: Path) -> None:
    audio = long_speech(tmp_path / "long.wav", 20)  # about 2 minutes
    started = time.monotonic()
    task_id = chaos.accepted(audio)
    wait_until(lambda: chaos.redis.llen(keys.job_segments_key(task_id)), 180,  # type: ignore[arg-type]
               "the first segment of the long job")
    first_segment = time.monotonic() - started
    assert chaos.job_field(task_id, "status") == "transcribing"

    victim = transcriber_worker_pid(chaos)
    main = chaos.service.procs["transcriber"]
    log_mark = chaos.log_size("transcriber")
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    # Dramatiq's main process notices its worker died and shuts itself down ...
    wait_until(lambda: main.poll() is not None, 60, "the transcriber's main process exiting after its worker died")
    main_exit = time.monotonic() - killed
    # ... and the supervisor (here, the test; in production docker's restart policy) starts it again.
    assert chaos.service.ensure() == ["transcriber"]

    final = chaos.wait_final(task_id, timeout=300)
    recovered = time.monotonic() - killed
    assert final["status"] == "completed", final
    # Exactly once: one pass through each state, and a transcript that is not doubled.
    assert assert_one_completion(chaos, task_id) == ["queued", "extracting", "transcribing", "completed"]
    assert chaos.job_field(task_id, "attempts_transcribe") == "2"  # the killed run and the one that finished
    reference = " ".join([SPEECH_EN_TEXT] * 20)
    text = final["result"]["text"]
    error = wer(reference, text)
    assert error <= 0.25, (error, text)
    assert len(normalise(text).split()) <= 1.15 * len(normalise(reference).split())
    segments = final["result"]["segments"]
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts) and len({s["id"] for s in segments}) == len(segments)
    assert segments[-1]["end"] > 100
    # The live segments list was started over by the second run, not appended to.
    assert chaos.redis.llen(keys.job_segments_key(task_id)) == len(segments)
    # The redelivered message waited for the dead worker's lease rather than running beside it.
    waits = [r for r in chaos.log_records("transcriber", since=log_mark, task_id=task_id)
             if "running elsewhere" in r.get("message", "")]
    TIMINGS["kill -9: first segment after (s)"] = round(first_segment, 1)
    TIMINGS["kill -9: transcriber main exited after (s)"] = round(main_exit, 1)
    TIMINGS["kill -9: job completed after the kill (s)"] = round(recovered, 1)
    TIMINGS["kill -9: lease re-checks of the redelivered message"] = len(waits)
    TIMINGS["kill -9: WER of the finished transcript"] = round(error, 3)


@pytest.mark.timeout(300)
def test_rabbitmq_restart_loses_no_queued_job(chaos: Chaos, tmp_path: Path) -> None:
    audio = unique_speech(tmp_path / "speech.wav")
    chaos.service.stop("transcriber")
    # Six jobs that differ in beam_size: none is a cache hit of another.
    ids = [chaos.accepted(audio, beam_size=str(beam)) for beam in range(1, 7)]
    wait_until(lambda: all(chaos.job_field(i, "stage") == "waiting-for-transcriber" for i in ids), 60,
               "the jobs extracted and waiting for a transcriber")
    depth = wait_until(lambda: (n := chaos.rabbit.queue_depths().get("transcribe", 0)) >= 6 and n, 30,
                       "six messages in the transcribe queue")

    chaos.rabbit.stop()  # the whole node, not only the app: messages must come back from disk
    try:
        began = time.monotonic()
        health = chaos.health()
        health_seconds = time.monotonic() - began
        assert health.status_code == 503, health.text
        assert health.json()["rabbitmq"] == "down" and health.json()["redis"] == "ok"

        began = time.monotonic()
        refused = chaos.submit(audio, beam_size="7")
        submit_seconds = time.monotonic() - began
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/json")
        assert refused.json()["error"]["code"] == "dependency_unavailable"
        assert submit_seconds < 15
        survivors = {name: chaos.service.running(name) for name in ("web", "worker")}
    finally:
        boot = chaos.rabbit.start()

    assert chaos.rabbit.queue_depths().get("transcribe") == depth, "the queued messages survived the restart"
    restarted = chaos.service.ensure()  # the stopped transcriber, and any worker that died
    finals = [chaos.wait_final(i, timeout=150) for i in ids]
    assert [f["status"] for f in finals] == ["completed"] * 6, finals
    for task_id, final in zip(ids, finals, strict=True):
        assert_one_completion(chaos, task_id)
        assert final["cached"] is False
        assert wer(SPEECH_EN_TEXT, final["result"]["text"]) <= 0.2, final["result"]["text"]

    # The API's own connections to the broker recover too: a new job goes through.
    after = chaos.accepted(audio, beam_size="8")
    assert chaos.wait_final(after, timeout=120)["status"] == "completed"

    TIMINGS["rabbitmq down: /api/health answered 503 in (s)"] = round(health_seconds, 2)
    TIMINGS["rabbitmq down: submit answered 503 in (s)"] = round(submit_seconds, 2)
    TIMINGS["rabbitmq restart: node boot (s)"] = boot
    TIMINGS["rabbitmq restart: processes still running while it was down"] = survivors
    TIMINGS["rabbitmq restart: processes restarted after"] = restarted


@pytest.mark.timeout(240)
def test_redis_restart_answers_503_then_recovers(chaos: Chaos, tmp_path: Path) -> None:
    audio = unique_speech(tmp_path / "speech.wav")
    earlier = chaos.accepted(audio)
    assert chaos.wait_final(earlier)["status"] == "completed"

    chaos.redis_server.stop()
    try:
        began = time.monotonic()
        health = chaos.health()
        health_seconds = time.monotonic() - began
        assert health.status_code == 503, health.text
        assert health.json()["redis"] == "down" and health.json()["status"] == "unavailable"

        answers: dict[str, Any] = {}
        for name, call in {
            "submit": lambda: chaos.submit(unique_speech(tmp_path / "other.wav")),
            "status": lambda: chaos.get(f"/api/transcribe/async/status/{earlier}", timeout=20),
            "list": lambda: chaos.get("/api/transcribe/async", timeout=20),
        }.items():
            began = time.monotonic()
            response = call()
            answers[name] = (response.status_code, round(time.monotonic() - began, 2))
            assert response.status_code == 503, (name, response.status_code, response.text)
            assert response.json()["error"]["code"] == "dependency_unavailable", (name, response.text)
            assert time.monotonic() - began < 15, name
    finally:
        chaos.redis_server.start()

    began = time.monotonic()
    wait_until(lambda: chaos.health().status_code == 200, 30, "/api/health back to 200")
    back_seconds = time.monotonic() - began
    # The restarted Redis is empty (it keeps nothing on disk); a new job goes through end to end.
    task_id = chaos.accepted(unique_speech(tmp_path / "after.wav"))
    final = chaos.wait_final(task_id, timeout=120)
    assert final["status"] == "completed", final
    assert final["cached"] is False and wer(SPEECH_EN_TEXT, final["result"]["text"]) <= 0.2
    assert_one_completion(chaos, task_id)

    TIMINGS["redis down: /api/health answered 503 in (s)"] = round(health_seconds, 2)
    TIMINGS["redis down: (status code, seconds) of submit, status, list"] = answers
    TIMINGS["redis restart: /api/health 200 again after (s)"] = round(back_seconds, 2)


@pytest.mark.timeout(180)
def test_webhook_delivered_on_the_third_attempt(chaos: Chaos, tmp_path: Path) -> None:
    receiver = Receiver([500, 500, 200])
    try:
        task_id = chaos.accepted(unique_speech(tmp_path / "speech.wav"), webhook_url=receiver.url)
        assert chaos.wait_final(task_id)["status"] == "completed"
        assert receiver.received.wait(60), f"no delivery; logs in {chaos.logs}"
        time.sleep(1)  # a fourth request would come right after a wrong "retry"
    finally:
        receiver.close()
    assert len(receiver.requests) == 3
    headers, body, _ = receiver.requests[-1]
    payload = Webhook(WEBHOOK_SECRET).verify(body, headers)
    assert payload["type"] == "transcription.completed"
    assert payload["data"]["task_id"] == task_id
    assert wer(SPEECH_EN_TEXT, payload["data"]["transcript"]["text"]) <= 0.2
    assert len({h["webhook-id"] for h, _, _ in receiver.requests}) == 1
    status = chaos.status(task_id)
    assert status["status"] == "completed"
    assert status["webhook"]["state"] == "delivered" and status["webhook"]["attempts"] == 3
    assert_one_completion(chaos, task_id)
    TIMINGS["webhook: first to third attempt (s)"] = round(receiver.requests[-1][2] - receiver.requests[0][2], 2)


@pytest.mark.timeout(180)
def test_redelivered_messages_never_redo_a_completed_job(chaos: Chaos, tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        task_id = chaos.accepted(unique_speech(tmp_path / "speech.wav"), webhook_url=receiver.url)
        assert chaos.wait_final(task_id)["status"] == "completed"
        assert receiver.received.wait(30)
        wait_until(lambda: chaos.job_field(task_id, "webhook_state") == "delivered", 10, "webhook state")

        key = keys.job_key(task_id)
        before = {
            "history": chaos.redis.lrange(f"{key}:history", 0, -1),
            "result": chaos.redis.get(f"{key}:result"),
            "segments": chaos.redis.lrange(f"{key}:segments", 0, -1),
            "job": {k: v for k, v in chaos.redis.hgetall(key).items()  # type: ignore[union-attr]
                    if not k.startswith("attempts_")},
            "audio_seconds": chaos.redis.hget(COUNTERS_KEY, "audio_seconds"),
            "cache": chaos.get("/api/cache-stats").json(),
        }
        marks = {name: chaos.log_size(name) for name in ("worker", "transcriber")}

        # The same messages again, as RabbitMQ would redeliver them.
        broker = rabbitmq.build_broker(chaos.settings)
        try:
            for actor in (queues.TRANSCRIBE_ACTOR, queues.EXTRACT_ACTOR, queues.NOTIFY_ACTOR,
                          queues.TRANSCRIBE_ACTOR):
                queues.send(broker, actor, task_id)
        finally:
            broker.close()

        def skipped(name: str, stage: str) -> int:
            return sum(f"{stage} skipped" in r.get("message", "")
                       for r in chaos.log_records(name, since=marks[name], task_id=task_id))

        wait_until(lambda: skipped("transcriber", "transcribe") == 2 and skipped("worker", "extract") == 1,
                   60, f"the redelivered messages handled (logs in {chaos.logs})")
        time.sleep(2)  # the notify message, handled beside them, must not fire the webhook again
    finally:
        receiver.close()

    after = {
        "history": chaos.redis.lrange(f"{key}:history", 0, -1),
        "result": chaos.redis.get(f"{key}:result"),
        "segments": chaos.redis.lrange(f"{key}:segments", 0, -1),
        "job": {k: v for k, v in chaos.redis.hgetall(key).items()  # type: ignore[union-attr]
                if not k.startswith("attempts_")},
        "audio_seconds": chaos.redis.hget(COUNTERS_KEY, "audio_seconds"),
        "cache": chaos.get("/api/cache-stats").json(),
    }
    assert after == before
    assert len(receiver.requests) == 1, "the webhook was not sent again"
    # The workers only said they skipped it (or, for a copy that met another copy's lease on
    # the job, that they would look again later): no stage ran again.
    for name in ("worker", "transcriber"):
        for record in chaos.log_records(name, since=marks[name], task_id=task_id):
            message = record.get("message", "")
            assert "skipped" in message or "running elsewhere" in message, record
