"""pipeline/keys.py: every Redis key and channel under ``wp:``, a job's keys under its own, none shared."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline import keys

JOB_KEYS: list[Callable[[str], str]] = [
    keys.job_history_key, keys.job_segments_key, keys.job_result_key, keys.job_cancel_key, keys.job_chunks_key,
    keys.job_parts_key, keys.job_redacted_audio_key, keys.job_lease_key, keys.events_channel,
]
LIVE_KEYS: list[Callable[[str], str]] = [
    keys.live_in_key, keys.live_out_key, keys.live_wake_channel, keys.live_lease_key,
]
DIGEST_KEYS: list[Callable[[str], str]] = [keys.cache_entry_key, keys.cache_claim_key, keys.diarize_turns_key]


def every_key(task_id: str = "t1") -> list[str]:
    constants = [value for name, value in vars(keys).items()
                 if name.endswith(("_KEY", "_CHANNEL", "_PREFIX")) and isinstance(value, str)]
    built = [make(task_id) for make in [*JOB_KEYS, keys.job_key, *LIVE_KEYS, keys.live_key, *DIGEST_KEYS,
                                        keys.webhook_claim_key]]
    return [*constants, *built, keys.jobs_index_key(None), keys.jobs_index_key("c1"), keys.client_key("c1", "streams")]


def test_every_key_starts_with_the_services_prefix() -> None:
    found = every_key()
    assert len(found) > 30
    assert [k for k in found if not k.startswith("wp:")] == []


def test_no_two_kinds_of_key_share_a_name() -> None:
    found = [k for k in every_key() if k != keys.CACHE_PREFIX]
    assert sorted({k for k in found if found.count(k) > 1}) == []


@pytest.mark.parametrize("make", JOB_KEYS, ids=lambda f: f.__name__)
def test_a_jobs_keys_hang_under_its_record(make: Callable[[str], str]) -> None:
    # So that deleting wp:job:<id>:* takes all of a job and nothing of another's.
    assert make("abc").startswith("wp:job:abc:")
    assert not make("abc").startswith("wp:job:ab:")


@pytest.mark.parametrize("make", LIVE_KEYS, ids=lambda f: f.__name__)
def test_a_live_sessions_keys_hang_under_its_record(make: Callable[[str], str]) -> None:
    assert make("s1").startswith(keys.live_key("s1") + ":")


def test_the_jobs_index_is_one_per_client_only_where_there_is_a_client() -> None:
    assert keys.jobs_index_key(None) == "wp:jobs"
    assert keys.jobs_index_key("") == "wp:jobs"
    assert keys.jobs_index_key("client-7") == "wp:jobs:client-7"


def test_a_lease_key_names_the_part_it_holds() -> None:
    assert keys.job_lease_key("t1") == "wp:job:t1:lease"
    assert keys.job_lease_key("t1", ":diarize") == "wp:job:t1:lease:diarize"
    assert keys.events_channel("t1") == "wp:job:t1:events"


def test_cache_keys_are_under_the_cache_prefix() -> None:
    for make in (keys.cache_entry_key, keys.cache_claim_key):
        assert make("d" * 64).startswith(keys.CACHE_PREFIX + ":")
    assert keys.CACHE_LRU_KEY.startswith(keys.CACHE_PREFIX + ":")
    assert keys.webhook_claim_key("t1") == f"{keys.WEBHOOKS_DUE_KEY}:claim:t1"
