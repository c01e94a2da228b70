"""pipeline/worker/heartbeat.py without a Redis: the record a worker process publishes (queues, threads,
busy and done counts, GPUs, what ``describe`` adds) and the middleware hooks that keep it current.
Writing it to Redis, and reading it back, is tests/integration/test_workers.py."""

from __future__ import annotations

import os
import socket
import threading
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from pipeline.worker import heartbeat
from pipeline.worker.gpu import GpuMetrics
from pipeline.worker.heartbeat import Heartbeat


def _no_redis() -> redis.Redis:
    raise redis.ConnectionError("no Redis in the unit tier")


def _message(message_id: str) -> Any:
    return SimpleNamespace(message_id=message_id)


@pytest.fixture
def broker() -> StubBroker:
    return StubBroker()


def test_the_record_says_who_and_what_this_process_is(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = GpuMetrics(index=0, name="H200", memory_total=100, memory_used=25, utilization=7, temperature=40)
    monkeypatch.setattr(heartbeat, "read_metrics", lambda: [gpu])
    beat = Heartbeat(lambda: {"device": "cuda", "models": ["faster-whisper:small:cuda:float16"]}, _no_redis)
    record = beat.record()
    assert (record["host"], record["pid"]) == (socket.gethostname(), os.getpid())
    assert (record["queues"], record["jobs_done"], record["busy"], record["threads"]) == ([], 0, 0, 1)
    assert record["gpus"] == [gpu.to_dict()] and record["gpus"][0]["memory_fraction"] == 0.25
    assert (record["device"], record["models"]) == ("cuda", ["faster-whisper:small:cuda:float16"])
    assert record["seen_at"] >= record["started_at"]


def test_what_describe_returns_overrides_nothing_it_does_not_name() -> None:
    record = Heartbeat(lambda: {"device": "cpu", "device_reason": "no GPU"}, _no_redis).record()
    assert {k: record[k] for k in ("device", "device_reason")} == {"device": "cpu", "device_reason": "no GPU"}
    assert {"host", "pid", "queues", "gpus", "jobs_done", "threads", "busy", "started_at", "seen_at"} <= set(record)


def test_busy_counts_messages_running_and_done_counts_those_that_ran(broker: StubBroker) -> None:
    beat = Heartbeat(dict, _no_redis)
    beat.before_process_message(broker, _message("a"))
    beat.before_process_message(broker, _message("b"))
    assert (beat.record()["busy"], beat.record()["jobs_done"]) == (2, 0)
    beat.after_process_message(broker, _message("a"), exception=RuntimeError("failed"))  # failed is done too
    beat.after_skip_message(broker, _message("b"))  # skipped: not done
    beat.after_skip_message(broker, _message("never-started"))
    assert (beat.record()["busy"], beat.record()["jobs_done"]) == (0, 1)


def test_a_message_wakes_the_beat_at_once(broker: StubBroker) -> None:
    beat = Heartbeat(dict, _no_redis)
    for hook in (beat.before_process_message, beat.after_process_message, beat.after_skip_message):
        beat._wake.clear()
        hook(broker, _message("m"))
        assert beat._wake.is_set(), hook.__name__


def test_boot_takes_the_queues_and_threads_and_shutdown_stops_the_beat(broker: StubBroker) -> None:
    beat = Heartbeat(dict, _no_redis)
    before = set(threading.enumerate())
    worker: Any = SimpleNamespace(consumer_whitelist={"transcribe", "extract"}, worker_threads=3)
    beat.after_worker_boot(broker, worker)
    started = [t for t in set(threading.enumerate()) - before if t.name == "heartbeat"]
    assert len(started) == 1 and started[0].daemon
    record = beat.record()
    assert (record["queues"], record["threads"]) == (["extract", "transcribe"], 3)
    # Redis is away: the failed beats are only logged, and shutdown's forget is not an error either.
    beat.before_worker_shutdown(broker, worker)
    started[0].join(timeout=10)
    assert not started[0].is_alive()


def test_without_a_queue_list_every_declared_queue_but_delay_and_dead_letter_ones_is_shown(
        broker: StubBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    for queue in ("transcribe", "diarize"):
        broker.declare_queue(queue)
    beat = Heartbeat(dict, _no_redis)
    monkeypatch.setattr(beat, "_run", lambda: None)  # the queues are the point here, not the thread
    beat.after_worker_boot(broker, SimpleNamespace(consumer_whitelist=None, worker_threads=0))  # type: ignore[arg-type]
    assert set(broker.get_declared_queues()) >= {"transcribe.DQ", "diarize.DQ"}
    record = beat.record()
    assert (record["queues"], record["threads"]) == (["diarize", "transcribe"], 1)
