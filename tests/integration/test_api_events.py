"""api/events.py: the process's one Redis subscriber (EventHub) and what follows a job through it
(wait_final, job_events, is_final), on the real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from api.events import EventHub, is_final, job_events, wait_final
from pipeline.jobs import JobStore, State, new_task_id
from pipeline.keys import events_channel
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript

DONE = Transcript(text="Hi.", language="en", duration=1.0, segments=(Segment(id=0, start=0, end=1, text="Hi."),))


@pytest.fixture
def hub(redis_client: redis.Redis) -> Iterator[EventHub]:
    found = EventHub(redis_client)
    yield found
    found.close()


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, result_ttl=120)


def new_job(store: JobStore, *states: State) -> str:
    task_id = new_task_id()
    store.create(task_id, TranscribeOptions())
    for state in states:
        store.transition(task_id, state)
    return task_id


def test_a_listener_gets_its_channels_messages_and_no_other(hub: EventHub, redis_client: redis.Redis) -> None:
    with hub.listen("wp:test:a") as first, hub.listen("wp:test:a") as second, hub.listen("wp:test:b") as other:
        assert hub.listeners() == 3
        # Subscribed once for the process, however many listen: Redis counts one subscriber.
        assert redis_client.pubsub_numsub("wp:test:a") == [("wp:test:a", 1)]
        redis_client.publish("wp:test:a", "hello")
        assert (first.get(5), second.get(5)) == ("hello", "hello")
        assert other.get(0.2) is None
    assert hub.listeners() == 0


def test_ending_the_streams_wakes_every_listener_and_marks_later_ones_closing(hub: EventHub) -> None:
    with hub.listen("wp:test:c") as inbox:
        hub.end_streams()
        assert inbox.closing and inbox.get(1) is None
        with hub.listen("wp:test:d") as later:
            assert later.closing


def test_is_final_reads_the_status_and_an_expired_record_counts_as_final(store: JobStore) -> None:
    assert is_final(store, new_task_id()) is True
    assert is_final(store, new_job(store, State.EXTRACTING)) is False
    assert is_final(store, new_job(store, State.CANCELLED)) is True


def test_wait_final_returns_a_final_job_at_once_and_a_running_one_at_its_timeout(
        hub: EventHub, store: JobStore) -> None:
    done = new_job(store, State.FAILED)
    assert wait_final(hub, store, done, timeout=30).status == "failed"
    running = new_job(store, State.EXTRACTING)
    assert wait_final(hub, store, running, timeout=0.2).status == "extracting"


def test_a_finished_jobs_stream_is_its_segments_then_its_final_state(hub: EventHub, store: JobStore) -> None:
    task_id = new_job(store, State.TRANSCRIBING)
    store.add_segment(task_id, Segment(id=0, start=0, end=1, text="Hi."), 0.5)
    store.transition(task_id, State.COMPLETED, result=DONE)
    got = list(job_events(hub, store, task_id, max_seconds=10))
    assert [e["type"] for e in got if e is not None] == ["segment", "status"]
    assert got[-1] is not None and got[-1]["status"] == "completed"


def test_a_running_jobs_stream_starts_where_it_stands_skips_a_segment_it_showed_and_ends_at_final(
        hub: EventHub, store: JobStore, redis_client: redis.Redis) -> None:
    task_id = new_job(store, State.TRANSCRIBING)
    store.add_segment(task_id, Segment(id=0, start=0, end=1, text="one"), 0.3)
    stream = job_events(hub, store, task_id, max_seconds=10)
    snapshot, shown = next(stream), next(stream)
    assert snapshot is not None and (snapshot["type"], snapshot["status"]) == ("status", "transcribing")
    assert shown is not None and shown["segment"]["text"] == "one"
    # Segment 0 published again, as when it went out between subscribing and reading the record.
    redis_client.publish(events_channel(task_id), json.dumps({"type": "segment", "segment": {"id": 0}}))
    store.add_segment(task_id, Segment(id=1, start=1, end=2, text="two"), 0.6)
    store.transition(task_id, State.COMPLETED, result=DONE)
    rest = [e for e in stream if e is not None]
    assert [(e["type"], e.get("segment", {}).get("text"), e.get("status")) for e in rest] == [
        ("segment", "two", None), ("status", None, "completed")]


def test_a_quiet_stream_asks_for_a_keep_alive_and_ends_when_the_process_stops(
        hub: EventHub, store: JobStore) -> None:
    task_id = new_job(store, State.EXTRACTING)
    stream = job_events(hub, store, task_id, max_seconds=10, idle=0.2)
    assert next(stream) is not None  # where the job stands
    assert next(stream) is None  # 0.2 s without an event: the caller's keep-alive
    hub.end_streams()
    assert list(stream) == []


def test_a_stream_ends_at_max_seconds_on_a_job_that_goes_on(hub: EventHub, store: JobStore) -> None:
    task_id = new_job(store, State.EXTRACTING)
    got = list(job_events(hub, store, task_id, max_seconds=0.3, idle=60))
    assert [e["type"] for e in got if e is not None] == ["status"]
