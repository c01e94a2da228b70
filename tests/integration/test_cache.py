"""pipeline/cache.py: the transcript cache on the real Redis (database 14, flushed for each test)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest
import redis

from pipeline import keys
from pipeline.cache import ResultCache, cache_key
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript
from tests.support.helpers import Ticks

OPTS = TranscribeOptions()


def sha(n: int) -> str:
    return f"{n:064x}"


def transcript(text: str) -> Transcript:
    return Transcript(text=text, language="en", duration=1.5, language_probability=0.9,
                      segments=(Segment(id=0, start=0.0, end=1.5, text=" " + text, tokens=(7,)),),
                      engine="faster-whisper", model="tiny.en", device="cpu")



def make(client: redis.Redis, *, size: int = 100, ttl: int = 3600, enabled: bool = True) -> ResultCache:
    return ResultCache(client, enabled=enabled, size=size, ttl=ttl, clock=Ticks())


def run_out(client: redis.Redis, key: str) -> None:
    """The entry's TTL runs out now: an expiry in the past removes it as expiry would."""
    client.pexpireat(key, 1)


def live_entries(client: redis.Redis) -> int:
    return len(client.keys(keys.cache_entry_key("*")))


def stat_counts(cache: ResultCache) -> dict[str, float | int | bool]:
    stats = cache.stats()
    return {k: stats[k] for k in ("enabled", "hits", "misses", "hit_rate", "entries")}


def put_spaced(cache: ResultCache, n: int, text: str) -> None:
    cache.put(sha(n), OPTS, transcript(text))


def test_miss_then_hit(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    assert cache.get(sha(1), OPTS) is None
    t = transcript("hello")
    cache.put(sha(1), OPTS, t)
    assert cache.get(sha(1), OPTS) == t
    assert stat_counts(cache) == {"enabled": True, "hits": 1, "misses": 1, "hit_rate": 0.5, "entries": 1}


def test_key_depends_on_bytes_and_every_option(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    cache.put(sha(1), OPTS, transcript("base"))
    assert cache.get(sha(2), OPTS) is None
    for changed in (
        dataclasses.replace(OPTS, language="en"),
        dataclasses.replace(OPTS, beam_size=1),
        dataclasses.replace(OPTS, word_timestamps=True),
        dataclasses.replace(OPTS, model="base"),
    ):
        assert cache_key(sha(1), changed) != cache_key(sha(1), OPTS)
        assert cache.get(sha(1), changed) is None
    assert cache.get(sha(1), TranscribeOptions()) == transcript("base")


def test_cache_key_shape() -> None:
    key = cache_key(sha(1), OPTS)
    assert key.startswith("wp:cache:entry:") and len(key) == len("wp:cache:entry:") + 64
    assert cache_key(sha(1), OPTS) == cache_key(sha(1), TranscribeOptions())


def test_stats_count_hits_and_misses(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    assert cache.stats() == {"enabled": True, "hits": 0, "misses": 0, "hit_rate": 0.0, "entries": 0,
                             "bytes": 0, "max_entries": 100, "ttl_seconds": 3600, "disk": False}
    cache.put(sha(1), OPTS, transcript("a"))
    cache.put(sha(2), OPTS, transcript("b"))
    for _ in range(3):
        cache.get(sha(1), OPTS)
    cache.get(sha(9), OPTS)
    stats = cache.stats()
    assert stats["hits"] == 3 and stats["misses"] == 1
    assert stats["hit_rate"] == pytest.approx(0.75)
    assert stats["entries"] == 2
    assert stats["bytes"] == sum(
        len(json.dumps(transcript(x).to_dict()).encode()) for x in ("a", "b")
    )


def test_stats_are_shared_between_instances(redis_client: redis.Redis) -> None:
    # The API and every worker hold their own ResultCache over the same Redis.
    make(redis_client).get(sha(1), OPTS)
    make(redis_client).put(sha(1), OPTS, transcript("a"))
    make(redis_client).get(sha(1), OPTS)
    assert make(redis_client).stats()["hit_rate"] == pytest.approx(0.5)


def test_put_overwrites_the_same_key(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    cache.put(sha(1), OPTS, transcript("old"))
    cache.put(sha(1), OPTS, transcript("new"))
    assert cache.get(sha(1), OPTS) == transcript("new")
    assert cache.stats()["entries"] == 1


def test_lru_eviction_beyond_size(redis_client: redis.Redis) -> None:
    cache = make(redis_client, size=3)
    for n in range(1, 5):
        put_spaced(cache, n, f"t{n}")
    assert cache.stats()["entries"] == 3
    assert live_entries(redis_client) == 3
    assert cache.get(sha(1), OPTS) is None  # the oldest went
    assert [cache.get(sha(n), OPTS) is not None for n in (2, 3, 4)] == [True, True, True]


def test_a_get_refreshes_recency(redis_client: redis.Redis) -> None:
    cache = make(redis_client, size=3)
    for n in (1, 2, 3):
        put_spaced(cache, n, f"t{n}")
    assert cache.get(sha(1), OPTS) is not None  # 1 is now the most recently used
    put_spaced(cache, 4, "t4")
    assert cache.get(sha(2), OPTS) is None  # 2 was the least recently used
    assert cache.get(sha(1), OPTS) == transcript("t1")
    assert cache.get(sha(3), OPTS) is not None and cache.get(sha(4), OPTS) is not None
    assert live_entries(redis_client) == 3


def test_a_miss_does_not_touch_recency(redis_client: redis.Redis) -> None:
    cache = make(redis_client, size=2)
    put_spaced(cache, 1, "t1")
    put_spaced(cache, 2, "t2")
    assert cache.get(sha(3), OPTS) is None
    put_spaced(cache, 3, "t3")
    assert cache.get(sha(1), OPTS) is None
    assert cache.stats()["entries"] == 2


def test_size_one(redis_client: redis.Redis) -> None:
    cache = make(redis_client, size=1)
    for n in range(1, 4):
        put_spaced(cache, n, f"t{n}")
    assert live_entries(redis_client) == 1
    assert cache.get(sha(3), OPTS) == transcript("t3")


def test_entries_get_the_ttl(redis_client: redis.Redis) -> None:
    cache = make(redis_client, ttl=300)
    cache.put(sha(1), OPTS, transcript("a"))
    ttl = redis_client.ttl(cache_key(sha(1), OPTS))
    assert 0 < ttl <= 300


def test_expired_entry_is_a_miss(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    cache.put(sha(1), OPTS, transcript("a"))
    run_out(redis_client, cache_key(sha(1), OPTS))
    assert cache.get(sha(1), OPTS) is None
    assert cache.stats()["misses"] == 1


def test_entries_do_not_count_expired_entries(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    cache.put(sha(1), OPTS, transcript("a"))
    cache.put(sha(2), OPTS, transcript("b"))
    run_out(redis_client, cache_key(sha(1), OPTS))
    assert cache.get(sha(1), OPTS) is None
    assert cache.stats()["entries"] == 1


def test_expired_entries_do_not_push_out_live_ones(redis_client: redis.Redis) -> None:
    cache = make(redis_client, size=2)
    put_spaced(cache, 1, "t1")
    put_spaced(cache, 2, "t2")
    # Entry 2 (the newer one) runs out its TTL: one live entry, one free slot.
    run_out(redis_client, cache_key(sha(2), OPTS))
    put_spaced(cache, 3, "t3")
    # Two live entries fit in a cache of size 2; entry 1 should still be there.
    assert cache.get(sha(1), OPTS) == transcript("t1")


def test_disabled_cache_never_stores_or_counts(redis_client: redis.Redis) -> None:
    cache = make(redis_client, enabled=False)
    cache.put(sha(1), OPTS, transcript("a"))
    assert cache.get(sha(1), OPTS) is None
    assert redis_client.keys(f"{keys.CACHE_PREFIX}:*") == []
    stats = cache.stats()
    assert stats["enabled"] is False
    assert (stats["hits"], stats["misses"], stats["entries"]) == (0, 0, 0)


def test_disabled_cache_does_not_read_what_an_enabled_one_stored(redis_client: redis.Redis) -> None:
    make(redis_client).put(sha(1), OPTS, transcript("a"))
    assert make(redis_client, enabled=False).get(sha(1), OPTS) is None


def test_empty_sha_is_never_cached(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    cache.put("", OPTS, transcript("a"))
    assert cache.get("", OPTS) is None
    assert redis_client.keys(f"{keys.CACHE_PREFIX}:*") == []


def test_clear(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    for n in range(3):
        cache.put(sha(n), OPTS, transcript(f"t{n}"))
    cache.get(sha(0), OPTS)
    cache.get(sha(7), OPTS)
    redis_client.set(keys.job_key("unrelated"), "1")
    assert cache.clear() == 3
    assert redis_client.keys(f"{keys.CACHE_PREFIX}:*") == []
    assert stat_counts(cache) == {"enabled": True, "hits": 0, "misses": 0, "hit_rate": 0.0, "entries": 0}
    assert cache.get(sha(0), OPTS) is None
    assert redis_client.get(keys.job_key("unrelated")) == "1"
    assert cache.clear() == 0


# -- disk cache (ENABLE_DISK_CACHE) ----------------------------------------------------------
def test_disk_cache_survives_a_redis_flush(redis_client: redis.Redis, tmp_path: Path) -> None:
    cache = ResultCache(redis_client, enabled=True, size=10, ttl=300, disk_dir=tmp_path / "disk")
    t = transcript("kept on disk")
    cache.put(sha(1), OPTS, t)
    files = list((tmp_path / "disk").glob("*.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text()) == t.to_dict()
    assert not list((tmp_path / "disk").glob("*.partial"))

    redis_client.flushdb()
    assert cache.get(sha(1), OPTS) == t
    # The hit refilled Redis, with a TTL no longer than what is left of the entry's life.
    key = cache_key(sha(1), OPTS)
    assert redis_client.exists(key)
    assert 0 < redis_client.ttl(key) <= 300
    assert cache.stats()["hits"] == 1 and cache.stats()["disk"] is True


def test_disk_entry_older_than_the_ttl_is_a_miss_and_removed(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    cache = ResultCache(redis_client, enabled=True, size=10, ttl=300, disk_dir=tmp_path)
    cache.put(sha(1), OPTS, transcript("old"))
    (path,) = tmp_path.glob("*.json")
    old = time.time() - 301
    os.utime(path, (old, old))
    redis_client.flushdb()
    assert cache.get(sha(1), OPTS) is None
    assert not path.exists()


def test_disk_files_follow_eviction_and_clear(redis_client: redis.Redis, tmp_path: Path) -> None:
    cache = ResultCache(redis_client, enabled=True, size=2, ttl=300, disk_dir=tmp_path)
    for n in (1, 2, 3):
        put_spaced(cache, n, f"t{n}")
    assert len(list(tmp_path.glob("*.json"))) == 2
    redis_client.flushdb()
    assert cache.get(sha(1), OPTS) is None  # evicted: gone from the disk too
    assert cache.get(sha(3), OPTS) == transcript("t3")
    assert cache.clear() >= 1
    assert list(tmp_path.glob("*.json")) == []


def test_disabled_cache_writes_nothing_to_disk(redis_client: redis.Redis, tmp_path: Path) -> None:
    cache = ResultCache(redis_client, enabled=False, size=2, ttl=300, disk_dir=tmp_path)
    cache.put(sha(1), OPTS, transcript("x"))
    assert list(tmp_path.iterdir()) == []


# -- claims: one transcription per distinct input --------------------------------------------
def test_claim_is_exclusive_until_released(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    assert cache.claimed(sha(1), OPTS) is False
    assert cache.claim(sha(1), OPTS, "job-a") is True
    assert cache.claimed(sha(1), OPTS) is True
    assert cache.claim(sha(1), OPTS, "job-b") is False
    # The holder's own redelivered message may take it again.
    assert cache.claim(sha(1), OPTS, "job-a") is True
    # Other options are another input.
    assert cache.claim(sha(1), dataclasses.replace(OPTS, beam_size=1), "job-b") is True
    cache.release(sha(1), OPTS, "job-b")  # not the holder: no effect
    assert cache.claimed(sha(1), OPTS) is True
    cache.release(sha(1), OPTS, "job-a")
    assert cache.claimed(sha(1), OPTS) is False
    assert cache.claim(sha(1), OPTS, "job-b") is True


def test_claim_expires_and_renew_extends_it(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    assert cache.claim(sha(1), OPTS, "job-a", ttl=30) is True
    key = next(iter(redis_client.keys(keys.cache_claim_key("*"))))
    assert 0 < redis_client.ttl(key) <= 30
    cache.renew(sha(1), OPTS, ttl=90)
    assert 30 < redis_client.ttl(key) <= 90
    run_out(redis_client, key)
    assert cache.claim(sha(1), OPTS, "job-b") is True


def test_claims_are_not_entries(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    cache.claim(sha(1), OPTS, "job-a")
    assert cache.stats()["entries"] == 0
    assert cache.get(sha(1), OPTS) is None


def test_disabled_cache_always_grants_claims(redis_client: redis.Redis) -> None:
    cache = make(redis_client, enabled=False)
    assert cache.claim(sha(1), OPTS, "a") is True
    assert cache.claim(sha(1), OPTS, "b") is True


def test_peek_does_not_count(redis_client: redis.Redis) -> None:
    cache = make(redis_client)
    assert cache.peek(sha(1), OPTS) is None
    cache.put(sha(1), OPTS, transcript("a"))
    assert cache.peek(sha(1), OPTS) == transcript("a")
    assert (cache.stats()["hits"], cache.stats()["misses"]) == (0, 0)
