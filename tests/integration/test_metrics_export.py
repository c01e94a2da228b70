"""pipeline/metrics_export.py on the real Redis: the metric families /metrics renders from the counts the
service keeps, and RabbitMQ's queue depths asked at most every few seconds."""

from __future__ import annotations

import json
import logging
import socket
from types import SimpleNamespace
from typing import cast

import pytest
import redis

from pipeline import metrics_export
from pipeline.jobs import FINAL_STATES, STATE_SECONDS_BUCKETS, State
from pipeline.keys import (
    CACHE_LRU_KEY,
    CACHE_STATS_KEY,
    METRICS_KEY,
    STAGE_SECONDS_KEY,
    WORKERS_RECORDS_KEY,
    WORKERS_SEEN_KEY,
)
from pipeline.metrics import count_audio_seconds, count_webhook
from pipeline.metrics_export import QueueDepth, ServiceCollector
from pipeline.queues import QUEUES

Labels = tuple[tuple[str, str], ...]


class FixedDepth(QueueDepth):
    """RabbitMQ's answer given in advance, counting how often it is asked."""

    def __init__(self, depths: dict[str, int]) -> None:
        super().__init__("amqp://unused.invalid/")
        self.answer = depths
        self.asked = 0

    def _ask(self) -> dict[str, int]:
        self.asked += 1
        return dict(self.answer)


def samples(client: redis.Redis, depths: dict[str, int] | None = None) -> dict[tuple[str, Labels], float]:
    """Every sample the collector yields, by name and sorted labels."""
    collector = ServiceCollector(client, FixedDepth(depths or {}))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in collector.collect() for s in family.samples}


def beat(client: redis.Redis, host: str, pid: int, queues: list[str], device: str, age: float = 0.0) -> None:
    """A worker's heartbeat as pipeline/worker/heartbeat.py writes it, ``age`` seconds ago by Redis's clock."""
    seconds, micros = cast(tuple[int, int], client.time())
    member = f"{host}:{pid}"
    client.zadd(WORKERS_SEEN_KEY, {member: seconds + micros / 1e6 - age})
    client.hset(WORKERS_RECORDS_KEY, member, json.dumps({"host": host, "pid": pid, "queues": queues, "device": device}))


def test_an_empty_redis_gives_every_metric_at_zero(redis_client: redis.Redis) -> None:
    got = samples(redis_client)
    for state in State:
        assert got[("whisper_jobs_total", (("state", state.value),))] == 0.0
        assert (("whisper_jobs_in_state", (("state", state.value),)) in got) == (state not in FINAL_STATES)
    assert got[("whisper_audio_seconds_transcribed_total", ())] == 0.0
    assert got[("whisper_cache_entries", ())] == 0.0
    assert not [key for key in got if key[0] in ("whisper_queue_depth", "whisper_workers")]


def test_job_counts_by_state_and_a_gauge_that_never_goes_negative(redis_client: redis.Redis) -> None:
    # A gauge can dip below zero for a moment when transitions race; a scrape must not show that.
    redis_client.hset(METRICS_KEY, mapping={"reached:queued": 5, "reached:completed": 3,
                                            "current:queued": -1, "current:transcribing": 2})
    got = samples(redis_client)
    assert got[("whisper_jobs_total", (("state", "queued"),))] == 5.0
    assert got[("whisper_jobs_total", (("state", "completed"),))] == 3.0
    assert got[("whisper_jobs_in_state", (("state", "queued"),))] == 0.0
    assert got[("whisper_jobs_in_state", (("state", "transcribing"),))] == 2.0


def test_state_durations_are_a_histogram_with_every_bucket(redis_client: redis.Redis) -> None:
    redis_client.hset(STAGE_SECONDS_KEY, mapping={"queued:count": 4, "queued:sum": 7.5, "queued:le:0.5": 1,
                                                  "queued:le:1": 2, "queued:le:10": 4})
    got = samples(redis_client)
    queued = {labels: value for (name, labels), value in got.items()
              if name == "whisper_state_duration_seconds_bucket" and ("state", "queued") in labels}
    assert len(queued) == len(STATE_SECONDS_BUCKETS) + 1
    assert queued[(("le", "0.5"), ("state", "queued"))] == 1.0
    assert queued[(("le", "1"), ("state", "queued"))] == 2.0
    assert queued[(("le", "0.05"), ("state", "queued"))] == 0.0
    assert queued[(("le", "+Inf"), ("state", "queued"))] == 4.0
    assert got[("whisper_state_duration_seconds_sum", (("state", "queued"),))] == 7.5
    assert got[("whisper_state_duration_seconds_count", (("state", "queued"),))] == 4.0
    states = {dict(labels)["state"] for name, labels in got if name == "whisper_state_duration_seconds_count"}
    assert states == {"queued", "extracting", "transcribing"}


def test_audio_webhook_and_cache_counters(redis_client: redis.Redis) -> None:
    count_audio_seconds(redis_client, 12.5)
    count_audio_seconds(redis_client, 0.25)
    for outcome in ("delivered", "delivered", "failed"):
        count_webhook(redis_client, outcome)
    redis_client.hset(CACHE_STATS_KEY, mapping={"hits": 7, "misses": 2})
    redis_client.zadd(CACHE_LRU_KEY, {"a": 1, "b": 2, "c": 3})
    got = samples(redis_client)
    assert got[("whisper_audio_seconds_transcribed_total", ())] == 12.75
    assert [got[("whisper_webhook_deliveries_total", (("outcome", o),))] for o in ("delivered", "retrying", "failed")
            ] == [2.0, 0.0, 1.0]
    assert (got[("whisper_cache_hits_total", ())], got[("whisper_cache_misses_total", ())]) == (7.0, 2.0)
    assert got[("whisper_cache_entries", ())] == 3.0


def test_live_workers_are_counted_per_queue_and_device(redis_client: redis.Redis) -> None:
    beat(redis_client, "a", 1, ["transcribe"], "cpu")
    beat(redis_client, "a", 2, ["transcribe", "extract"], "cpu")
    beat(redis_client, "b", 1, ["transcribe"], "cuda")
    beat(redis_client, "c", 1, ["transcribe"], "cpu", age=60)  # stopped beating: dead
    workers = {labels: value for (name, labels), value in samples(redis_client).items() if name == "whisper_workers"}
    assert workers == {(("device", "cpu"), ("queue", "extract")): 1.0,
                       (("device", "cpu"), ("queue", "transcribe")): 2.0,
                       (("device", "cuda"), ("queue", "transcribe")): 1.0}


def test_queue_depths_are_reported_per_queue(redis_client: redis.Redis) -> None:
    got = samples(redis_client, {"transcribe": 4, "extract.DQ": 1})
    depths = {labels: value for (name, labels), value in got.items() if name == "whisper_queue_depth"}
    assert depths == {(("queue", "extract.DQ"),): 1.0, (("queue", "transcribe"),): 4.0}


def test_queue_depth_asks_at_most_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(metrics_export, "time", SimpleNamespace(monotonic=lambda: now[0]))
    depth = FixedDepth({"transcribe": 3})
    assert depth.read() == {"transcribe": 3}
    depth.answer = {"transcribe": 9}
    now[0] += metrics_export.QUEUE_DEPTH_TTL_SECONDS  # not past the TTL yet
    first = depth.read()
    assert first == {"transcribe": 3} and depth.asked == 1
    first["transcribe"] = 0  # the caller's copy, not the cache
    now[0] += 0.1
    assert depth.read() == {"transcribe": 9} and depth.asked == 2


def test_rabbitmq_that_cannot_be_reached_gives_no_depths(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="pipeline.metrics_export"):
        assert QueueDepth(f"amqp://guest:guest@127.0.0.1:{port}/").read() == {}
    assert "queue depth unavailable" in caplog.text


def test_every_queue_and_its_delay_queue_is_asked_of_rabbitmq(rabbitmq_url: str) -> None:
    depths = QueueDepth(rabbitmq_url).read()
    assert set(depths) == {name for queue in QUEUES for name in (queue, f"{queue}.DQ")}
    assert all(isinstance(n, int) and n >= 0 for n in depths.values())
