"""The "one transcription per identical input" claim (pipeline/cache.py) on the real Redis:
taking, renewing and releasing are each one atomic step, checked against the holder."""

from __future__ import annotations

import threading
import time
from typing import cast

import pytest
import redis

from pipeline.cache import ResultCache, _claim_key
from pipeline.options import TranscribeOptions

SHA = "0" * 64
OPTIONS = TranscribeOptions()


def ttl(client: redis.Redis, key: str) -> int:
    return int(cast(int, client.ttl(key)))


@pytest.fixture
def cache(redis_client: redis.Redis) -> ResultCache:
    return ResultCache(redis_client, enabled=True, size=10, ttl=60)


def test_two_claimers_at_once_one_wins_fifty_times_in_a_row(
        cache: ResultCache, redis_client: redis.Redis) -> None:
    def claimer(barrier: threading.Barrier, won: dict[str, bool], owner: str) -> None:
        barrier.wait()
        won[owner] = cache.claim(SHA, OPTIONS, owner, ttl=30)

    for round_ in range(50):
        redis_client.delete(_claim_key(SHA, OPTIONS))
        barrier = threading.Barrier(2)
        won: dict[str, bool] = {}
        threads = [threading.Thread(target=claimer, args=(barrier, won, f"job-{round_}-{n}"))
                   for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        winners = [owner for owner, ok in won.items() if ok]
        assert len(won) == 2 and len(winners) == 1, f"round {round_}: {won}"
        assert redis_client.get(_claim_key(SHA, OPTIONS)) == winners[0]


def test_a_holder_claiming_again_extends_its_own_claim(cache: ResultCache, redis_client: redis.Redis) -> None:
    assert cache.claim(SHA, OPTIONS, "a", ttl=5)
    assert cache.claim(SHA, OPTIONS, "a", ttl=100)  # a redelivered message of the same job
    assert 90 < ttl(redis_client, _claim_key(SHA, OPTIONS)) <= 100
    assert not cache.claim(SHA, OPTIONS, "b", ttl=100)


def test_a_lapsed_holder_can_neither_extend_nor_release_its_successors_claim(
        cache: ResultCache, redis_client: redis.Redis) -> None:
    assert cache.claim(SHA, OPTIONS, "a", ttl=1)
    time.sleep(1.2)  # a's claim lapses (its worker stalled), and b takes the input
    assert cache.claim(SHA, OPTIONS, "b", ttl=60)
    assert not cache.renew(SHA, OPTIONS, ttl=600, owner="a")
    assert not cache.release(SHA, OPTIONS, "a")
    assert not cache.claim(SHA, OPTIONS, "a", ttl=60)
    key = _claim_key(SHA, OPTIONS)
    assert redis_client.get(key) == "b" and ttl(redis_client, key) <= 60
    assert cache.renew(SHA, OPTIONS, ttl=90, owner="b") and ttl(redis_client, key) > 60
    assert cache.release(SHA, OPTIONS, "b") and not cache.claimed(SHA, OPTIONS)
    assert cache.claim(SHA, OPTIONS, "a", ttl=60)
