"""pipeline/workers.py on the real Redis: the workers seen within the TTL, by Redis's clock, sorted;
a host's health check; a worker forgotten at shutdown; and the beat (pipeline/worker/heartbeat.py)
pruning the dead and keeping both keys expiring."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis

from pipeline.keys import WORKERS_RECORDS_KEY, WORKERS_SEEN_KEY
from pipeline.worker.heartbeat import Heartbeat
from pipeline.workers import TTL_SECONDS, beating_on, forget_worker, live_workers, worker_member


@pytest.fixture
def client(redis_dbs: tuple[str, str]) -> Iterator[redis.Redis]:
    # The unit database alone: no RabbitMQ is needed for heartbeats.
    conn = redis.Redis.from_url(redis_dbs[1], decode_responses=True)
    conn.delete(WORKERS_SEEN_KEY, WORKERS_RECORDS_KEY)
    yield conn
    conn.delete(WORKERS_SEEN_KEY, WORKERS_RECORDS_KEY)
    conn.close()


def _redis_now(client: redis.Redis) -> float:
    seconds, micros = cast(tuple[int, int], client.time())
    return seconds + micros / 1e6


def _plant(client: redis.Redis, host: str, pid: int, age: float, **extra: Any) -> None:
    """A worker's record as a beat ``age`` seconds ago (by Redis's clock) would have left it."""
    member = worker_member(host, pid)
    client.zadd(WORKERS_SEEN_KEY, {member: _redis_now(client) - age})
    client.hset(WORKERS_RECORDS_KEY, member, json.dumps({"host": host, "pid": pid, **extra}))


def test_a_member_is_host_and_pid() -> None:
    assert worker_member("gpu-1", 42) == "gpu-1:42"


def test_live_workers_are_those_seen_within_the_ttl_sorted_by_host_then_pid(client: redis.Redis) -> None:
    _plant(client, "b-host", 7, age=1, queues=["transcribe"])
    _plant(client, "a-host", 30, age=2)
    _plant(client, "a-host", 4, age=TTL_SECONDS - 3)
    _plant(client, "c-host", 1, age=TTL_SECONDS + 5)  # dead: not beating for longer than the TTL
    assert [(w["host"], w["pid"]) for w in live_workers(client)] == [("a-host", 4), ("a-host", 30), ("b-host", 7)]
    assert live_workers(client)[-1]["queues"] == ["transcribe"]


def test_no_worker_at_all_is_an_empty_list(client: redis.Redis) -> None:
    assert live_workers(client) == []
    assert beating_on(client, "any-host") is False


def test_a_member_seen_but_without_a_record_is_skipped(client: redis.Redis) -> None:
    client.zadd(WORKERS_SEEN_KEY, {"ghost:1": _redis_now(client)})
    _plant(client, "real", 2, age=0)
    assert [w["host"] for w in live_workers(client)] == ["real"]


def test_the_health_check_asks_only_about_its_own_host(client: redis.Redis) -> None:
    _plant(client, "worker-a", 10, age=1)
    _plant(client, "worker-b", 11, age=TTL_SECONDS + 1)
    assert beating_on(client, "worker-a") is True
    assert beating_on(client, "worker-b") is False
    assert beating_on(client, "worker-c") is False


def test_a_forgotten_worker_is_gone_at_once_and_the_others_stay(client: redis.Redis) -> None:
    _plant(client, "h", 1, age=0)
    _plant(client, "h", 2, age=0)
    forget_worker(client, "h", 1)
    assert [w["pid"] for w in live_workers(client)] == [2]
    assert client.hexists(WORKERS_RECORDS_KEY, "h:1") is False and client.zscore(WORKERS_SEEN_KEY, "h:1") is None
    forget_worker(client, "h", 99)  # never there: not an error


def test_a_beat_publishes_its_record_and_prunes_the_dead(client: redis.Redis) -> None:
    _plant(client, "long-gone", 5, age=TTL_SECONDS + 30)
    beat = Heartbeat(lambda: {"device": "cpu"}, lambda: client)
    beat._queues = ["transcribe"]
    beat.beat()
    (mine,) = live_workers(client)
    assert (mine["device"], mine["queues"]) == ("cpu", ["transcribe"])
    assert client.hexists(WORKERS_RECORDS_KEY, "long-gone:5") is False
    assert client.zscore(WORKERS_SEEN_KEY, "long-gone:5") is None
    # Both keys expire when no worker beats any more.
    for key in (WORKERS_SEEN_KEY, WORKERS_RECORDS_KEY):
        assert 0 < cast(int, client.ttl(key)) <= TTL_SECONDS * 4
