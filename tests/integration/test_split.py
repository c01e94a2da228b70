"""pipeline/worker/split.py: when a recording is cut across idle transcribers, and into how many pieces."""

from __future__ import annotations

import contextlib
import wave
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dramatiq
import numpy as np
import pytest
import redis

from pipeline import keys
from pipeline.keys import SPLIT_RESERVED_KEY
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.settings import Settings
from pipeline.worker.heartbeat import Heartbeat
from pipeline.worker.split import (
    jobs_ahead,
    read_idle_transcribers,
    release_slot,
    take_idle_transcribers,
)
from tests.support.helpers import SHARED_AUDIO

DEFAULTS = Settings()


@contextlib.contextmanager
def idle_slots(client: redis.Redis, threads: int) -> Iterator[Heartbeat]:
    """A transcribe worker's heartbeat in Redis showing ``threads`` free slots, the only worker
    there, and no reservation; all gone afterwards."""
    client.delete(SPLIT_RESERVED_KEY)
    for key in client.scan_iter(match=f"{keys.WORKERS_SEEN_KEY}*"):
        client.delete(key)
    beat = Heartbeat(lambda: {"device": "cpu"}, lambda: client)
    beat._queues = ["transcribe"]
    beat._threads = threads
    try:
        beat.beat()
        yield beat
    finally:
        client.delete(SPLIT_RESERVED_KEY)
        for key in client.scan_iter(match=f"{keys.WORKERS_SEEN_KEY}*"):
            client.delete(key)


class Message:
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id


def test_heartbeats_in_redis_tell_idle_capacity(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    broker = dramatiq.get_broker()
    with idle_slots(client, 2) as beat:
        assert read_idle_transcribers(client) == 2
        beat.before_process_message(broker, Message("a"))
        beat.beat()
        assert read_idle_transcribers(client) == 1
        beat.before_process_message(broker, Message("b"))
        beat.beat()
        assert read_idle_transcribers(client) == 0
        beat.after_process_message(broker, Message("a"))
        beat.after_skip_message(broker, Message("b"))
        beat.after_skip_message(broker, Message("never-started"))  # skipped before it ran
        beat.beat()
        assert read_idle_transcribers(client) == 2


def test_unreadable_heartbeats_mean_no_split() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    assert read_idle_transcribers(dead) == 0


def _minute(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """The first minute of multilingual.mp3 as a WAV file, and its samples."""
    source = SHARED_AUDIO / "multilingual.mp3"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    minute = tmp_path / "minute.wav"
    samples = decode_audio(source)[: 60 * SAMPLE_RATE]
    with wave.open(str(minute), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return minute, samples


def test_extract_cuts_a_minute_across_two_idle_transcribers_and_not_when_they_are_busy(
        ctx: Any, tmp_path: Any) -> None:
    """The call site: the extract stage reads idle capacity from the heartbeats and plans the
    pieces, so that a lone 60 s job goes to both transcribers."""
    from pipeline.worker import stages
    from tests.support.jobs import submit

    minute, samples = _minute(tmp_path)
    with idle_slots(ctx.redis, 2) as beat:  # two free slots, as two one-thread processes would show
        split_job = submit(ctx, minute)
        assert stages.extract(ctx, split_job) is stages.Next.CHUNKS
        plan = ctx.jobs.get(split_job).chunks
        assert len(plan) == 2 and plan[0][0] == 0 and plan[-1][1] == len(samples)
        assert all(15 * SAMPLE_RATE <= end - start <= 45 * SAMPLE_RATE for start, end in plan)
        # Uploaded together: the heartbeats still show both free, but the first job has them.
        burst_job = submit(ctx, minute)
        assert stages.extract(ctx, burst_job) is stages.Next.TRANSCRIBE
        ctx.redis.delete(SPLIT_RESERVED_KEY)
        beat.before_process_message(dramatiq.get_broker(), Message("a"))
        beat.before_process_message(dramatiq.get_broker(), Message("b"))
        beat.beat()
        whole_job = submit(ctx, minute)
        assert stages.extract(ctx, whole_job) is stages.Next.TRANSCRIBE


def test_a_minute_uploaded_with_others_is_not_cut_for_slots_they_will_take(ctx: Any, tmp_path: Path) -> None:
    """Two slots free, and another job uploaded at the same moment, not yet decoded: that job
    will take a slot, so the minute goes whole. Once the other is transcribing, a minute is cut."""
    from pipeline.jobs import State
    from pipeline.worker import stages
    from tests.support.jobs import submit

    minute, _samples = _minute(tmp_path)
    with idle_slots(ctx.redis, 2) as beat:
        other = submit(ctx, minute)
        first = submit(ctx, minute)
        assert jobs_ahead(ctx.redis, first) == 1
        assert stages.extract(ctx, first) is stages.Next.TRANSCRIBE
        # The other is decoded and waits for a transcriber, the first job's still reserved.
        ctx.jobs.transition(other, State.EXTRACTING)
        assert jobs_ahead(ctx.redis, first) == 1
        assert jobs_ahead(ctx.redis, other) == 0  # the first holds a reservation: counted once
        ctx.redis.delete(SPLIT_RESERVED_KEY)
        for job in (other, first):  # each taken by a transcriber
            ctx.jobs.transition(job, State.TRANSCRIBING)
        beat.beat()
        assert jobs_ahead(ctx.redis, "third") == 0
        third = submit(ctx, minute)
        assert stages.extract(ctx, third) is stages.Next.CHUNKS


def test_a_decision_reserves_the_slots_it_counts_on(redis_client: redis.Redis) -> None:
    client = redis_client  # an empty database: no job of another test counts as ahead
    with idle_slots(client, 3):
        assert take_idle_transcribers(client, "first", 60.0, DEFAULTS) == 3
        assert take_idle_transcribers(client, "first", 40.0, DEFAULTS) == 1  # redelivered: its own again
        assert take_idle_transcribers(client, "second", 60.0, DEFAULTS) == 2
        assert take_idle_transcribers(client, "third", 60.0, DEFAULTS) == 0
        client.delete(SPLIT_RESERVED_KEY)  # as RESERVE_SECONDS later
        assert take_idle_transcribers(client, "fourth", 60.0, replace(DEFAULTS, split_min_seconds=0)) == 1


def test_a_transcriber_that_takes_a_piece_gives_its_slot_back(redis_client: redis.Redis) -> None:
    client = redis_client  # an empty database: no job of another test counts as ahead
    with idle_slots(client, 2):
        assert take_idle_transcribers(client, "short", 10.0, DEFAULTS) == 1
        assert take_idle_transcribers(client, "minute", 60.0, DEFAULTS) == 1  # one slot seemed taken
        client.delete(SPLIT_RESERVED_KEY)
        assert take_idle_transcribers(client, "short", 10.0, DEFAULTS) == 1
        release_slot(client, "short")  # taken, done: the heartbeat shows both free again
        assert take_idle_transcribers(client, "minute", 60.0, DEFAULTS) == 2
        release_slot(client, "minute", 2)
        assert client.zrange(SPLIT_RESERVED_KEY, 0, -1) == ["minute:1"]


def test_the_transcribe_stage_releases_the_slot_its_job_reserved(ctx: Any) -> None:
    """A short upload followed at once by a minute: the minute is split (the service bench's
    first 60 s run after jfk.flac was not, for the 3 s the short job's reservation lasted)."""
    from pipeline.worker import stages
    from tests.support.helpers import SPEECH_EN
    from tests.support.jobs import submit

    with idle_slots(ctx.redis, 2):
        task_id = submit(ctx, SPEECH_EN)
        assert stages.extract(ctx, task_id) is stages.Next.TRANSCRIBE
        assert ctx.redis.zrange(SPLIT_RESERVED_KEY, 0, -1) == [f"{task_id}:1"]
        stages.transcribe(ctx, task_id)
        assert ctx.jobs.get(task_id).status == "completed"
        assert ctx.redis.zrange(SPLIT_RESERVED_KEY, 0, -1) == []
