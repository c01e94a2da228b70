"""pipeline/worker/layout.py and pipeline/worker/transcriber.py: the transcriber's processes and threads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from pipeline.queues import TRANSCRIBE_QUEUE
from pipeline.settings import Settings
from pipeline.tooling.stack import Service, free_port, read_procfile, redis_database, redis_url, service_env
from pipeline.worker import split
from pipeline.workers import live_workers
from tests.support.stack import own_vhost


def test_the_procfile_transcriber_runs_the_layout_asked_for_with_the_model_loaded_before_any_job(
        test_env: dict[str, str], tmp_path: Path) -> None:
    """The Procfile's launcher, started as the tests and `make run` start it: as many
    one-thread processes as TRANSCRIBER_PROCESSES says, each with the default model loaded
    while no job has come (its heartbeat lists it), each counted as an idle slot for splitting."""
    with redis_database("layout") as db, own_vhost("whisper-pipeline-layout") as amqp:
        env = {**test_env, "REDIS_URL": redis_url(db), "RABBITMQ_URL": amqp,
               "TRANSCRIBER_PROCESSES": "2", "CPU_THREADS": "1", "LOG_FORMAT": "text"}
        specs = read_procfile(free_port())
        service = Service({"transcriber": specs["transcriber"]}, service_env(env), tmp_path / "logs")
        client = redis.Redis.from_url(redis_url(db), decode_responses=True)
        default = f"faster-whisper:{Settings().default_model}:cpu:int8"
        records: list[dict[str, object]] = []
        try:
            service.start("transcriber")
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                assert not service.exited(), service.log_tail("transcriber")
                records = [r for r in live_workers(client) if TRANSCRIBE_QUEUE in r.get("queues", [])]
                if len(records) == 2 and all(default in r.get("models", []) for r in records):
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"no two transcribers with {default} loaded: {records}\n"
                            f"{service.log_tail('transcriber')}")
        finally:
            service.stop_all()
            client.close()
    assert len({r["pid"] for r in records}) == 2
    assert all(r["threads"] == 1 and r["busy"] == 0 and r["jobs_done"] == 0 for r in records)
    assert split.idle_transcribers(records) == 2
