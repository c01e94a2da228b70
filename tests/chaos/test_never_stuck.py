"""Never lost, never stuck: a job whose message never reached RabbitMQ, a webhook
receiver that is down for half a minute, identical uploads racing, a worker process killed
under `make run`'s supervisor, and a Redis that may evict keys. Each test checks the real
outcome: the job's state and history, the delivery and its signature, the engine runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from standardwebhooks.webhooks import Webhook

from pipeline import keys
from pipeline.keys import COUNTERS_KEY
from pipeline.tooling.stack import descendants, read_procfile, service_env, session_members
from pipeline.workers import live_workers
from tests.chaos.conftest import (
    TIMINGS,
    Chaos,
    PrivateRedis,
    free_port,
    history_is_sane,
    unique_speech,
    wait_until,
)
from tests.support.helpers import ROOT, SPEECH_EN_TEXT, Receiver, long_speech, wer
from tests.support.stack import WEBHOOK_SECRET

QUEUES = {"extract", "notify", "transcribe"}


def states(chaos: Chaos, task_id: str) -> list[str]:
    history = chaos.history(task_id)
    assert history_is_sane(history), history
    return [h["status"] for h in history]


# -- a job recorded whose message never reached RabbitMQ -------------------------------------------

@pytest.mark.timeout(300)
def test_a_job_recorded_but_never_queued_completes_within_the_reconciler_s_period(
        chaos: Chaos, tmp_path: Path) -> None:
    """The API recorded the job and answered 202, and its message is gone: exactly what is left
    when the API dies between the two steps. Here the API records it for real, and its message
    is purged from the queue before any worker can take it."""
    settings = chaos.settings
    chaos.service.stop("worker")  # nobody takes the message before it is purged
    try:
        task_id = chaos.accepted(unique_speech(tmp_path / "speech.wav"))
        recorded = time.monotonic()
        purged = chaos.rabbit.ctl("purge_queue", "extract")
        assert purged.returncode == 0, purged.stderr
        assert chaos.rabbit.queue_depths().get("extract", 0) == 0
        assert chaos.job_field(task_id, "status") == "queued"
    finally:
        assert chaos.service.ensure() == ["worker"]
    limit = settings.reconcile_after_seconds + 2 * settings.reconcile_period_seconds + 60
    final = chaos.wait_final(task_id, timeout=limit)
    took = time.monotonic() - recorded
    assert final["status"] == "completed", final
    assert wer(SPEECH_EN_TEXT, final["result"]["text"]) <= 0.2
    assert states(chaos, task_id) == ["queued", "extracting", "transcribing", "completed"]
    # It was sent again once, and not before it had been idle RECONCILE_AFTER_SECONDS.
    assert chaos.job_field(task_id, "reconcile_resends") == "1"
    assert took >= settings.reconcile_after_seconds
    TIMINGS["reconciler: stuck job completed after (s)"] = round(took, 1)


# -- a receiver down for 30 s that says when to come back --------------------------------------------

def down_then_up(down: float) -> Receiver:
    """Answers 503 with ``Retry-After: 5`` for ``down`` seconds after the first request, then 200."""
    return Receiver(answer=lambda since: (503, {"Retry-After": "5"}) if since < down else (200, {}))


@pytest.mark.timeout(240)
def test_a_receiver_answering_503_with_retry_after_for_30_s_gets_the_event(chaos: Chaos, tmp_path: Path) -> None:
    receiver = down_then_up(30.0)
    try:
        task_id = chaos.accepted(unique_speech(tmp_path / "speech.wav"), webhook_url=receiver.url)
        assert chaos.wait_final(task_id)["status"] == "completed"
        assert receiver.received.wait(90), f"not delivered: {receiver.answers}; logs in {chaos.logs}"
        time.sleep(2)  # nothing comes after the delivery
    finally:
        receiver.close()
    answers = receiver.answers
    assert answers[-1] == 200 and answers.count(200) == 1, answers
    assert receiver.requests[-1][2] - receiver.requests[0][2] >= 30
    # Retry-After honoured: never sooner than 5 s after a 503 (the schedule alone says 1 s, 4 s).
    gaps = [b[2] - a[2] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert all(gap >= 4.9 for gap in gaps), gaps
    headers, body, _ = receiver.requests[-1]
    payload = Webhook(WEBHOOK_SECRET).verify(body, headers)  # raises when the signature is wrong
    assert payload["type"] == "transcription.completed" and payload["data"]["task_id"] == task_id
    assert len({r[0]["webhook-id"] for r in receiver.requests}) == 1
    webhook = chaos.status(task_id)["webhook"]
    assert webhook["state"] == "delivered" and webhook["attempts"] == len(answers), webhook
    TIMINGS["webhook: 503 for 30 s, attempts until delivered"] = len(answers)


# -- identical uploads at once ------------------------------------------------------------------------

@pytest.mark.timeout(1200)
def test_two_identical_uploads_at_once_transcribe_once_fifty_times_in_a_row(chaos: Chaos, tmp_path: Path) -> None:
    """Two transcriber processes, so that both jobs of a pair reach the engine at the same
    moment: the claim (one Redis script) lets one run it and the other take its result. Each
    pair is new audio, so the cache never answers at upload; engine runs are counted by the
    audio seconds the engines report."""
    spec = chaos.service.specs["transcriber"]
    chaos.service.replace("transcriber", spec, TRANSCRIBER_PROCESSES="2")
    wait_until(lambda: len([w for w in live_workers(chaos.redis) if "transcribe" in w.get("queues", [])]) == 2,
               120, "two transcriber processes beating")
    try:
        chaos.wait_ready(120)
        for round_ in range(50):
            audio = unique_speech(tmp_path / f"pair{round_}.wav").read_bytes()
            before = float(chaos.redis.hget(COUNTERS_KEY, "audio_seconds") or 0)  # type: ignore[arg-type]
            ids: list[str] = []
            barrier = threading.Barrier(2)

            def upload(data: bytes, ids: list[str], barrier: threading.Barrier) -> None:
                barrier.wait()
                ids.append(chaos.accepted(data))

            threads = [threading.Thread(target=upload, args=(audio, ids, barrier)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(ids) == 2, f"round {round_}: an upload failed"
            finals = [chaos.wait_final(i, timeout=120) for i in ids]
            assert [f["status"] for f in finals] == ["completed", "completed"], (round_, finals)
            assert sorted(f["cached"] for f in finals) == [False, True], (round_, finals)
            assert finals[0]["result"]["text"] == finals[1]["result"]["text"]
            ran = next(f for f in finals if not f["cached"])
            runs = (float(chaos.redis.hget(COUNTERS_KEY, "audio_seconds") or 0) - before) / ran["duration"]  # type: ignore[arg-type]
            assert round(runs, 3) == 1.0, f"round {round_}: the engine ran {runs:.2f} times"
    finally:
        chaos.service.replace("transcriber", spec)
        chaos.wait_ready(120)


# -- `make run`'s supervisor -------------------------------------------------------------------------

def supervisorctl(config: Path, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).with_name("supervisorctl")), "-c", str(config), *args],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.strip()


@pytest.mark.timeout(600)
def test_kill_9_of_a_transcriber_worker_under_make_run_s_supervisor(chaos: Chaos, tmp_path: Path) -> None:
    """`make run` runs `python -m pipeline.tooling.supervise -f Procfile -p $(PORT)`; here the same
    command (metrics ports made free) on a Redis database and RabbitMQ virtual host of its own."""
    assert "-m pipeline.tooling.supervise -f Procfile -p $(PORT)" in (ROOT / "Makefile").read_text()
    vhost = "supervised"
    for args in (("add_vhost", vhost), ("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")):
        assert chaos.rabbit.ctl(*args).returncode == 0
    redis_url = chaos.redis_server.url.removesuffix("/0") + "/1"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    procfile = tmp_path / "Procfile"
    procfile.write_text(re.sub(r"WORKER_METRICS_PORT=\d+", lambda _: f"WORKER_METRICS_PORT={free_port()}",
                               (ROOT / "Procfile").read_text()))
    settings = {k: v for k, v in chaos.service.env.items() if k in {
        "DEVICE", "CPU_THREADS", "MAX_RETRIES", "MODEL_DIR", "LOG_FORMAT", "WEBHOOK_SECRET"}}
    settings["TRANSCRIBER_PROCESSES"] = "1"
    settings |= {"REDIS_URL": redis_url, "RABBITMQ_URL": f"{chaos.rabbit.url}{vhost}",
                 "UPLOAD_DIR": str(tmp_path / "uploads"), "CACHE_DIR": str(tmp_path / "cache"),
                 "SCRATCH_DIR": str(tmp_path / "scratch")}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    console = tmp_path / "console.log"
    config = tmp_path / "state" / "supervisord.conf"
    with console.open("ab") as out:  # appended: supervisord and its programs share the file
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.tooling.supervise", "-f", str(procfile),
                                 "-p", str(port),
                                 "--state-dir", str(tmp_path / "state")], cwd=ROOT, env=service_env(settings),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    http = requests.Session()
    try:
        def serving() -> bool:
            queues = {q for w in live_workers(client) for q in w.get("queues", [])}
            return http.get(f"{url}/api/health", timeout=5).status_code == 200 and QUEUES <= queues

        wait_until(serving, 180, f"the supervised service ready (console in {console})", interval=1)
        web_pid = supervisorctl(config, "pid", "web")
        audio = long_speech(tmp_path / "long.wav", 20)
        response = http.post(f"{url}/api/transcribe/async", files={"file": ("long.wav", audio.read_bytes())},
                             timeout=60)
        assert response.status_code == 202, response.text
        task_id = response.json()["task_id"]
        wait_until(lambda: client.llen(keys.job_segments_key(task_id)), 180, "the first segment")
        victims = [int(w["pid"]) for w in live_workers(client) if "transcribe" in w.get("queues", [])]
        assert len(victims) == 1 and victims[0] in descendants([proc.pid]), victims
        os.kill(victims[0], signal.SIGKILL)
        killed = time.monotonic()

        # The API answers all along, and supervisord starts the transcriber again.
        def restarted() -> bool:
            assert http.get(f"{url}/api/transcribe/async/status/{task_id}", timeout=10).status_code == 200
            return any("transcribe" in w.get("queues", []) and int(w["pid"]) != victims[0]
                       for w in live_workers(client))

        wait_until(restarted, 120, f"a new transcriber (console in {console})", interval=0.5)
        back = time.monotonic() - killed

        def final() -> dict[str, Any] | None:
            body: dict[str, Any] = http.get(f"{url}/api/transcribe/async/status/{task_id}", timeout=10).json()
            return body if body["status"] in ("completed", "failed", "cancelled") else None

        job = wait_until(final, 300, f"job {task_id} final (console in {console})", interval=0.5)
        assert job["status"] == "completed", job
        raw: list[str] = client.lrange(keys.job_history_key(task_id), 0, -1)  # type: ignore[assignment]
        history = [json.loads(h)["status"] for h in raw]
        assert history == ["queued", "extracting", "transcribing", "completed"], history
        assert client.hget(keys.job_key(task_id), "attempts_transcribe") == "2"
        assert http.get(f"{url}/api/health", timeout=10).status_code == 200
        assert supervisorctl(config, "pid", "web") == web_pid  # the API was never restarted
        text = console.read_text(errors="replace")
        assert re.search(r"exited: transcriber \(exit status \d+; not expected\)", text), text[-3000:]
        assert "transcriber | " in text and "web" in text
        TIMINGS["supervised: transcriber serving again after kill -9 (s)"] = round(back, 1)
    finally:
        http.close()
        client.close()
        proc.terminate()  # supervisord stops every program, then itself
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(90)
        for pid in session_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        chaos.rabbit.ctl("delete_vhost", vhost)


# -- a Redis that may evict keys ----------------------------------------------------------------------

@pytest.mark.timeout(300)
@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_an_eviction_policy_that_can_drop_jobs_is_refused_at_start_up(
        chaos: Chaos, tmp_path: Path, policy: str) -> None:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        admin = redis.Redis(port=server.port)
        admin.config_set("maxmemory-policy", policy)
        admin.close()
        env = {k: v for k, v in chaos.service.env.items()}
        env |= {"REDIS_URL": server.url, "UPLOAD_DIR": str(tmp_path / "uploads"),
                "SCRATCH_DIR": str(tmp_path / "scratch")}
        specs = read_procfile(free_port())
        for name, spec in (("web", specs["web"].with_options(workers=1)), ("worker", specs["worker"])):
            started = time.monotonic()
            done = subprocess.run(list(spec.argv), cwd=ROOT, env={**env, **spec.env}, capture_output=True,
                                  text=True, timeout=120, check=False)
            output = done.stdout + done.stderr
            assert done.returncode != 0, f"{name} started on a Redis with {policy}: {output[-2000:]}"
            assert f"maxmemory-policy is {policy}" in output and "noeviction" in output, output[-3000:]
            TIMINGS[f"eviction {policy}: {name} refused in (s)"] = round(time.monotonic() - started, 1)
    finally:
        server.stop()
