"""Redis hygiene (pipeline/hygiene.py, pipeline/workers.py, pipeline/worker/heartbeat.py, the disk cache's
pruning): every key has a TTL or is pruned by time, and a Redis that may evict keys is refused at start-up."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from pipeline import hygiene, keys, outbox, workers
from pipeline.cache import ResultCache, cache_digest
from pipeline.errors import SettingsError
from pipeline.jobs import INDEX_GRACE_SECONDS, JobStore, State, new_task_id
from pipeline.keys import QUEUED_KEY
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.stores import Stores
from pipeline.transcript import Segment, Transcript
from pipeline.worker import heartbeat

TTL = 600
RESULT = Transcript(text="Hello.", language="en", duration=1.0,
                    segments=(Segment(id=0, start=0.0, end=1.0, text=" Hello."),))
# Keys without a TTL, each pruned by time: by the reconciler, the outbox sweeper, or the cache's
# trim; metrics hashes hold a fixed set of fields.
PRUNED = {keys.ACTIVE_KEY, keys.WEBHOOKS_DUE_KEY, keys.CACHE_LRU_KEY, keys.CACHE_STATS_KEY, keys.METRICS_KEY,
          keys.STAGE_SECONDS_KEY, keys.COUNTERS_KEY}


def ttl(client: redis.Redis, key: str) -> int:
    return int(cast(int, client.ttl(key)))


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[int]:
    """A Redis of the test's own, whose eviction policy it may change freely."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed here")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru",
                                    "volatile-ttl"])
def test_an_eviction_policy_that_can_drop_jobs_is_refused(private_redis: int, policy: str) -> None:
    client = redis.Redis(port=private_redis, decode_responses=True)
    client.config_set("maxmemory-policy", policy)
    with pytest.raises(SettingsError) as refused:
        hygiene.check_redis_policy(client)
    message = refused.value.message
    assert policy in message and "CONFIG SET maxmemory-policy noeviction" in message
    client.config_set("maxmemory-policy", "noeviction")
    assert hygiene.check_redis_policy(client) == "noeviction"


def test_a_redis_that_is_down_does_not_stop_the_start(private_redis: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    assert hygiene.check_redis_policy(redis.Redis(port=port, socket_connect_timeout=1)) is None


def test_every_key_of_a_job_s_life_has_a_ttl_or_is_pruned(settings: Settings, redis_client: redis.Redis,
                                                          tmp_path: Path) -> None:
    jobs = JobStore(redis_client, result_ttl=TTL)
    cache = ResultCache(redis_client, enabled=True, size=10, ttl=60, disk_dir=tmp_path)
    stores = Stores(settings=dataclasses.replace(settings, webhook_allow_private=True), redis=redis_client,
                    jobs=jobs, cache=cache)
    task_id = new_task_id()
    jobs.create(task_id, TranscribeOptions(), owner="key-1", webhook_url="http://127.0.0.1:9/hook",
                webhook_state="pending")
    jobs.transition(task_id, State.EXTRACTING)
    stores.leases.take(task_id, "w", 30)
    jobs.transition(task_id, State.TRANSCRIBING)
    assert cache.claim("a" * 64, TranscribeOptions(), task_id)
    jobs.add_segment(task_id, RESULT.segments[0], 0.5)
    cache.put("a" * 64, TranscribeOptions(), RESULT)
    jobs.transition(task_id, State.COMPLETED, result=RESULT)
    jobs.request_stop(task_id)
    outbox.attempt(stores, task_id)  # nobody listens on port 9: pending, retried later
    heartbeat.Heartbeat(lambda: {}, lambda: redis_client).beat()
    keys = cast(list[str], redis_client.keys("*"))
    undying = [k for k in keys if ttl(redis_client, k) < 0 and k not in PRUNED]
    assert undying == []


def test_listing_indexes_and_the_queue_set_are_pruned_by_time(redis_client: redis.Redis) -> None:
    jobs = JobStore(redis_client, result_ttl=TTL)
    ancient = time.time() - TTL - INDEX_GRACE_SECONDS - 10
    redis_client.zadd(keys.jobs_index_key("key-1"), {"old-job": ancient})
    redis_client.zadd(QUEUED_KEY, {"old-job": ancient})
    task_id = new_task_id()
    jobs.create(task_id, TranscribeOptions(), owner="key-1")
    for index in (keys.jobs_index_key("key-1"), QUEUED_KEY):
        assert redis_client.zrange(index, 0, -1) == [task_id]
        assert 0 < ttl(redis_client, index) <= TTL + INDEX_GRACE_SECONDS


def test_queue_positions_of_jobs_that_are_gone_are_dropped(redis_client: redis.Redis) -> None:
    jobs = JobStore(redis_client, result_ttl=TTL)
    kept, gone = new_task_id(), new_task_id()
    for task_id in (kept, gone):
        jobs.create(task_id, TranscribeOptions())
    redis_client.delete(keys.job_key(gone))
    assert hygiene.prune_queued(redis_client) == 1
    assert redis_client.zrange(QUEUED_KEY, 0, -1) == [kept] and jobs.queue_position(kept) == 1


def test_disk_cache_files_of_expired_entries_are_deleted(redis_client: redis.Redis, tmp_path: Path) -> None:
    cache = ResultCache(redis_client, enabled=True, size=10, ttl=60, disk_dir=tmp_path)
    old, fresh = TranscribeOptions(language="en"), TranscribeOptions(language="de")
    cache.put("b" * 64, old, RESULT)
    cache.put("b" * 64, fresh, RESULT)
    old_file = tmp_path / f"{cache_digest('b' * 64, old)}.json"
    stale = time.time() - 61
    os.utime(old_file, (stale, stale))
    leftover = tmp_path / "deadbeef.123.partial"
    leftover.write_text("{")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    assert cache.prune_disk() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{cache_digest('b' * 64, fresh)}.json"]
    assert cache.peek("b" * 64, fresh) is not None


def test_heartbeats_live_in_one_sorted_set_and_the_dead_drop_out(redis_client: redis.Redis) -> None:
    beat = heartbeat.Heartbeat(lambda: {"device": "cpu"}, lambda: redis_client)
    beat.beat()
    me = workers.worker_member(socket.gethostname(), os.getpid())
    # A worker that stopped beating a minute ago (Redis's clock, as the beats use).
    seconds, micros = cast(tuple[int, int], redis_client.time())
    redis_client.zadd(keys.WORKERS_SEEN_KEY, {"gone-host:1": seconds + micros / 1e6 - 60})
    redis_client.hset(keys.WORKERS_RECORDS_KEY, "gone-host:1", '{"host": "gone-host", "pid": 1}')
    live = workers.live_workers(redis_client)
    assert [(w["host"], w["pid"], w["device"]) for w in live] == [(socket.gethostname(), os.getpid(), "cpu")]
    assert workers.beating_on(redis_client, socket.gethostname())
    assert not workers.beating_on(redis_client, "gone-host")
    beat.beat()  # each beat prunes the dead
    assert redis_client.zrange(keys.WORKERS_SEEN_KEY, 0, -1) == [me]
    assert redis_client.hkeys(keys.WORKERS_RECORDS_KEY) == [me]
    assert all(0 < ttl(redis_client, k) <= 4 * workers.TTL_SECONDS
               for k in (keys.WORKERS_SEEN_KEY, keys.WORKERS_RECORDS_KEY))
    workers.forget_worker(redis_client, socket.gethostname(), os.getpid())
    assert workers.live_workers(redis_client) == []
