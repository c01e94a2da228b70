"""pipeline/leases.py on the real Redis: one holder per job stage, renewed and dropped only by the token that
took it."""

from __future__ import annotations

from typing import cast

import pytest
import redis

from pipeline.keys import job_lease_key
from pipeline.leases import Leases


@pytest.fixture
def leases(redis_client: redis.Redis) -> Leases:
    return Leases(redis_client)


def ttl(client: redis.Redis, key: str) -> int:
    return int(cast(int, client.ttl(key)))


def test_a_second_holder_cannot_take_a_held_lease(leases: Leases, redis_client: redis.Redis) -> None:
    assert leases.take("t1", "first", ttl=30)
    assert not leases.take("t1", "second", ttl=30)
    assert redis_client.get(job_lease_key("t1")) == "first"
    assert 0 < ttl(redis_client, job_lease_key("t1")) <= 30


def test_the_holder_renews_its_lease_to_the_new_ttl(leases: Leases, redis_client: redis.Redis) -> None:
    leases.take("t1", "mine", ttl=5)
    assert leases.renew("t1", "mine", ttl=300)
    assert 5 < ttl(redis_client, job_lease_key("t1")) <= 300


def test_another_token_neither_renews_nor_drops_it(leases: Leases, redis_client: redis.Redis) -> None:
    # A delivery whose lease lapsed and was taken by another must leave the new holder's alone.
    leases.take("t1", "current", ttl=5)
    assert not leases.renew("t1", "stale", ttl=300)
    leases.drop("t1", "stale")
    assert redis_client.get(job_lease_key("t1")) == "current"
    assert ttl(redis_client, job_lease_key("t1")) <= 5


def test_dropping_frees_the_lease_for_the_next_holder(leases: Leases, redis_client: redis.Redis) -> None:
    leases.take("t1", "first", ttl=30)
    leases.drop("t1", "first")
    assert redis_client.exists(job_lease_key("t1")) == 0
    assert leases.take("t1", "second", ttl=30)


def test_a_lapsed_lease_cannot_be_renewed(leases: Leases, redis_client: redis.Redis) -> None:
    leases.take("t1", "mine", ttl=30)
    redis_client.delete(job_lease_key("t1"))  # what the TTL does to a holder that stopped renewing
    assert not leases.renew("t1", "mine", ttl=30)
    assert redis_client.exists(job_lease_key("t1")) == 0  # renewing does not bring it back


def test_each_part_of_a_job_has_a_lease_of_its_own(leases: Leases, redis_client: redis.Redis) -> None:
    assert leases.take("t1", "job", ttl=30)
    assert leases.take("t1", "chunk", ttl=30, part=":chunk0")
    assert not leases.take("t1", "other", ttl=30, part=":chunk0")
    leases.drop("t1", "job")
    assert redis_client.get(job_lease_key("t1", ":chunk0")) == "chunk"
    assert leases.take("t2", "job", ttl=30)  # and each job its own
