"""pipeline/jobs.py: the job store on the real Redis (database 14, flushed for each test)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis

from api.events import EventHub, job_events
from pipeline import keys
from pipeline.errors import JobNotFound
from pipeline.jobs import FINAL_STATES, Job, JobStore, Moved, State, new_task_id
from pipeline.keys import events_channel, job_key
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript
from tests.support.helpers import Ticks

TTL = 120


FORWARD = [State.EXTRACTING, State.TRANSCRIBING, State.COMPLETED]


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, result_ttl=TTL)


def new_job(store: JobStore, **fields: Any) -> str:
    task_id = new_task_id()
    store.create(task_id, TranscribeOptions(), **fields)
    return task_id


def transcript(text: str = "Hello world.") -> Transcript:
    return Transcript(
        text=text, language="en", duration=2.0, language_probability=0.99, device="cpu",
        engine="faster-whisper", model="tiny.en",
        segments=(Segment(id=0, start=0.0, end=2.0, text=" " + text, tokens=(1, 2)),),
    )


def snapshot(client: redis.Redis, task_id: str) -> dict[str, Any]:
    key = job_key(task_id)
    return {
        "hash": client.hgetall(key),
        "history": client.lrange(f"{key}:history", 0, -1),
        "result": client.get(f"{key}:result"),
        "segments": client.lrange(f"{key}:segments", 0, -1),
        "queued": client.zscore(keys.QUEUED_KEY, task_id),
        "ttls": [client.ttl(k) for k in (key, f"{key}:history", f"{key}:result", f"{key}:segments")],
    }


@pytest.fixture
def subscriber(redis_client: redis.Redis) -> Iterator[redis.client.PubSub]:
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    yield pubsub
    pubsub.close()


def drain(pubsub: redis.client.PubSub, wait: float = 1.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is None:
            if out:
                break
            continue
        out.append(json.loads(message["data"]))
    return out


def test_create(store: JobStore, redis_client: redis.Redis) -> None:
    opts = TranscribeOptions(model="base", language="de", word_timestamps=True)
    before = time.time()
    job = store.create("t1", opts, sha256="ab" * 32, filename="a.wav", upload_path="/u/t1.upload",
                       webhook_url="http://hook", result_url="http://r", owner="key1")
    assert isinstance(job, Job)
    assert job.task_id == "t1"
    assert job.status == "queued" and job.stage == "queued"
    assert job.progress == 0.0
    assert before <= job.created_at <= time.time()
    assert job.options == opts
    assert (job.sha256, job.filename, job.upload_path) == ("ab" * 32, "a.wav", "/u/t1.upload")
    assert (job.webhook_url, job.result_url, job.owner) == ("http://hook", "http://r", "key1")
    assert job.started_at is None and job.finished_at is None
    assert job.cached is False and job.error is None and job.is_final is False
    assert job.webhook_state == "" and job.webhook_attempts == 0 and job.webhook_last_status is None
    raw = redis_client.hgetall(job_key("t1"))
    assert raw["engine"] == "faster-whisper" and raw["model"] == "base"
    assert store.history("t1") == [{"status": "queued", "at": pytest.approx(job.created_at)}]
    assert store.queue_position("t1") == 1
    # Listed in its owner's index (each API key sees only its own jobs).
    assert redis_client.zscore(keys.jobs_index_key("key1"), "t1") == pytest.approx(job.created_at)
    # A job that is not final does not expire.
    assert redis_client.ttl(job_key("t1")) == -1


def test_get_unknown_job_raises(store: JobStore) -> None:
    with pytest.raises(JobNotFound) as info:
        store.get("nope")
    assert info.value.http_status == 404


def test_unknown_job_everywhere(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.transition("nope", State.EXTRACTING)
    with pytest.raises(JobNotFound):
        store.set_fields("nope", stage="x")
    with pytest.raises(JobNotFound):
        store.wait_final("nope", timeout=0.2)
    assert store.add_segment("nope", Segment(id=0, start=0, end=1, text="x"), 0.5) is False
    assert store.queue_position("nope") is None
    assert store.result("nope") is None
    assert store.history("nope") == [] and store.segments("nope") == []


def test_transition_does_not_create_a_record(store: JobStore, redis_client: redis.Redis) -> None:
    with pytest.raises(JobNotFound):
        store.transition("ghost", State.COMPLETED, result=transcript())
    assert redis_client.keys(keys.job_key("ghost") + "*") == []


# -- forward transitions ---------------------------------------------------------------------
def test_forward_transitions_are_timestamped_and_recorded(store: JobStore) -> None:
    task_id = new_job(store)
    created = store.get(task_id).created_at
    stamps = [created]
    for state in FORWARD:
        before = time.time()
        assert store.transition(task_id, state) is Moved.MOVED
        job = store.get(task_id)
        assert job.status == state.value
        assert job.updated_at is not None and before <= job.updated_at <= time.time()
        stamps.append(job.updated_at)
    job = store.get(task_id)
    assert job.stage == "done" and job.progress == 1.0 and job.is_final
    assert job.started_at == pytest.approx(stamps[1])
    assert job.finished_at == pytest.approx(stamps[-1])
    assert created <= job.started_at <= job.finished_at  # type: ignore[operator]
    history = store.history(task_id)
    assert [h["status"] for h in history] == ["queued", "extracting", "transcribing", "completed"]
    assert [h["at"] for h in history] == pytest.approx(stamps)
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)


def test_stage_follows_the_state(store: JobStore) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.EXTRACTING)
    assert store.get(task_id).stage == "extracting"
    store.transition(task_id, State.TRANSCRIBING, stage="custom")
    assert store.get(task_id).stage == "custom"
    store.transition(task_id, State.FAILED, error={"code": "x", "message": "y"})
    assert store.get(task_id).stage == "done"
    # A failed job keeps the progress it had.
    assert store.get(task_id).progress == 0.0


@pytest.mark.parametrize("final", [State.COMPLETED, State.FAILED, State.CANCELLED])
def test_queued_can_jump_straight_to_a_final_state(store: JobStore, final: State) -> None:
    task_id = new_job(store)
    assert store.transition(task_id, final) is Moved.MOVED
    job = store.get(task_id)
    assert job.status == final.value
    # It never ran: no start time, only an end.
    assert job.started_at is None and job.finished_at is not None
    assert store.queue_position(task_id) is None


def test_skipping_a_state_is_forward(store: JobStore) -> None:
    task_id = new_job(store)
    assert store.transition(task_id, State.TRANSCRIBING) is Moved.MOVED
    assert [h["status"] for h in store.history(task_id)] == ["queued", "transcribing"]


def test_fields_are_set_with_the_transition(store: JobStore) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.TRANSCRIBING, device="cpu")
    assert store.get(task_id).device == "cpu"
    error = {"code": "unsupported_media", "message": "nope"}
    store.transition(task_id, State.FAILED, error=error)
    job = store.get(task_id)
    assert job.error == error
    assert job.status == "failed"


def test_started_at_is_set_once(store: JobStore) -> None:
    store = JobStore(store.redis, result_ttl=store.result_ttl, clock=Ticks())  # every write a later time
    task_id = new_job(store)
    store.transition(task_id, State.EXTRACTING)
    started = store.get(task_id).started_at
    store.transition(task_id, State.TRANSCRIBING)
    assert store.get(task_id).started_at == started


# -- same state, backwards, out of final -----------------------------------------------------
@pytest.mark.parametrize("state", [State.EXTRACTING, State.TRANSCRIBING, State.COMPLETED, State.FAILED])
def test_same_state_is_already_and_changes_nothing(
    store: JobStore, redis_client: redis.Redis, state: State
) -> None:
    task_id = new_job(store)
    store.transition(task_id, state, result=transcript("first") if state is State.COMPLETED else None)
    before = snapshot(redis_client, task_id)
    moved = store.transition(task_id, state, device="gpu", result=transcript("second"))
    assert moved is Moved.ALREADY
    after = snapshot(redis_client, task_id)
    assert after["hash"] == before["hash"]
    assert after["history"] == before["history"]
    assert after["result"] == before["result"]


def test_queued_again_is_already(store: JobStore) -> None:
    task_id = new_job(store)
    assert store.transition(task_id, State.QUEUED) is Moved.ALREADY
    assert store.queue_position(task_id) == 1


@pytest.mark.parametrize(
    ("reached", "target"),
    [
        (State.EXTRACTING, State.QUEUED),
        (State.TRANSCRIBING, State.QUEUED),
        (State.TRANSCRIBING, State.EXTRACTING),
    ],
)
def test_backwards_is_refused_and_changes_nothing(
    store: JobStore, redis_client: redis.Redis, reached: State, target: State
) -> None:
    task_id = new_job(store)
    store.transition(task_id, reached)
    before = snapshot(redis_client, task_id)
    assert store.transition(task_id, target, device="x", stage="x") is Moved.REFUSED
    assert snapshot(redis_client, task_id) == before


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
@pytest.mark.parametrize("target", list(State))
def test_nothing_leaves_a_final_state(
    store: JobStore, redis_client: redis.Redis, final: State, target: State
) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.TRANSCRIBING)
    store.transition(task_id, final, result=transcript("kept") if final is State.COMPLETED else None)
    before = snapshot(redis_client, task_id)
    moved = store.transition(task_id, target, result=transcript("other"), error={"code": "c", "message": "m"})
    assert moved is (Moved.ALREADY if target is final else Moved.REFUSED)
    after = snapshot(redis_client, task_id)
    assert after["hash"] == before["hash"]
    assert after["history"] == before["history"]
    assert after["result"] == before["result"]
    assert store.get(task_id).status == final.value


@pytest.mark.parametrize("reached", list(State))
def test_the_transition_script_ranks_states_in_the_order_of_state(store: JobStore, reached: State) -> None:
    """The Lua rank table is generated from ``State``: from every state, each other state is
    forward exactly when it comes later in the enum, and nothing moves a final job."""
    order = list(State)
    for target in State:
        task_id = new_job(store)
        if reached is not State.QUEUED:
            assert store.transition(task_id, reached) is Moved.MOVED
        if target is reached:
            expected = Moved.ALREADY
        elif reached in FINAL_STATES or order.index(target) < order.index(reached):
            expected = Moved.REFUSED
        else:
            expected = Moved.MOVED
        assert store.transition(task_id, target) is expected, (reached, target)
        assert store.get(task_id).status is (target if expected is Moved.MOVED else reached)


@pytest.mark.parametrize("state", list(State))
def test_the_transition_script_ends_exactly_the_final_states(
    store: JobStore, redis_client: redis.Redis, state: State
) -> None:
    """What the script does on reaching a final state (finish time, expiry, the job counted
    out of the current gauge) happens for every final state of ``State`` and no other."""
    before = int(redis_client.hget(keys.METRICS_KEY, f"current:{state}") or 0)
    task_id = new_job(store)
    if state is not State.QUEUED:
        store.transition(task_id, state)
    job = store.get(task_id)
    assert job.is_final is (state in FINAL_STATES)
    assert (job.finished_at is not None) is job.is_final
    assert (redis_client.ttl(job_key(task_id)) > 0) is job.is_final
    after = int(redis_client.hget(keys.METRICS_KEY, f"current:{state}") or 0)
    assert after - before == (0 if job.is_final else 1)


def test_a_cancellation_racing_a_completion_has_one_winner(store: JobStore) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.TRANSCRIBING)
    results: dict[State, Moved] = {}
    barrier = threading.Barrier(2)

    def go(state: State) -> None:
        barrier.wait()
        results[state] = store.transition(
            task_id, state, result=transcript() if state is State.COMPLETED else None
        )

    threads = [threading.Thread(target=go, args=(s,)) for s in (State.COMPLETED, State.CANCELLED)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(m.value for m in results.values()) == [Moved.REFUSED.value, Moved.MOVED.value]
    winner = next(s for s, m in results.items() if m is Moved.MOVED)
    assert store.get(task_id).status == winner.value
    assert [h["status"] for h in store.history(task_id)][-1] == winner.value
    assert (store.result(task_id) is not None) is (winner is State.COMPLETED)


# -- queue position --------------------------------------------------------------------------
def test_queue_position_follows_creation_order_and_drops_jobs_that_leave(store: JobStore) -> None:
    ids = [new_job(store) for _ in range(4)]
    assert [store.queue_position(i) for i in ids] == [1, 2, 3, 4]
    store.transition(ids[1], State.EXTRACTING)
    assert [store.queue_position(i) for i in ids] == [1, None, 2, 3]
    store.transition(ids[0], State.CANCELLED)
    assert [store.queue_position(i) for i in ids] == [None, None, 1, 2]
    store.transition(ids[3], State.COMPLETED, result=transcript())
    assert [store.queue_position(i) for i in ids] == [None, None, 1, None]
    # A refused move back to queued does not re-enter the queue.
    store.transition(ids[1], State.QUEUED)
    assert store.queue_position(ids[1]) is None


# -- segments and progress -------------------------------------------------------------------
def test_add_segment_only_while_transcribing(store: JobStore) -> None:
    task_id = new_job(store)
    seg = Segment(id=0, start=0.0, end=1.0, text=" one")
    assert store.add_segment(task_id, seg, 0.1) is False
    store.transition(task_id, State.EXTRACTING)
    assert store.add_segment(task_id, seg, 0.1) is False
    assert store.segments(task_id) == [] and store.get(task_id).progress == 0.0

    store.transition(task_id, State.TRANSCRIBING)
    seg2 = Segment(id=1, start=1.0, end=2.5, text=" two", tokens=(5, 6))
    assert store.add_segment(task_id, seg, 0.4) is True
    assert store.get(task_id).progress == pytest.approx(0.4)
    assert store.add_segment(task_id, seg2, 0.8) is True
    assert store.get(task_id).progress == pytest.approx(0.8)
    assert store.segments(task_id) == [seg, seg2]

    store.transition(task_id, State.CANCELLED)
    assert store.add_segment(task_id, Segment(id=2, start=3, end=4, text=" three"), 0.9) is False
    assert store.segments(task_id) == [seg, seg2]
    assert store.get(task_id).progress == pytest.approx(0.8)


def test_reset_segments(store: JobStore) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.TRANSCRIBING)
    store.add_segment(task_id, Segment(id=0, start=0, end=1, text="x"), 0.5)
    store.reset_segments(task_id)
    assert store.segments(task_id) == []


# -- results and expiry ----------------------------------------------------------------------
def test_result_is_saved_with_completion(store: JobStore, redis_client: redis.Redis) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.TRANSCRIBING)
    assert store.result(task_id) is None
    result = transcript("The result.")
    moved = store.transition(task_id, State.COMPLETED, result=result, language="en", cached=False)
    assert moved is Moved.MOVED
    assert store.result(task_id) == result
    job = store.get(task_id)
    assert job.status == "completed" and job.language == "en" and job.cached is False
    assert json.loads(redis_client.get(f"{job_key(task_id)}:result") or "") == result.to_dict()


def test_complete_saves_the_transcript_and_what_it_tells(store: JobStore) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.TRANSCRIBING, device="cuda")
    result = transcript("Ran here.")
    assert store.complete(task_id, result, cached=False) is Moved.MOVED
    job = store.get(task_id)
    assert job.status is State.COMPLETED and job.stage == "done" and job.progress == 1.0
    assert store.result(task_id) == result and job.cached is False
    assert (job.language, job.language_probability, job.duration, job.device) == ("en", 0.99, 2.0, "cpu")
    assert store.complete(task_id, transcript("again"), cached=False) is Moved.ALREADY
    assert store.result(task_id) == result

    hit = new_job(store)
    assert store.complete(hit, transcript("From the cache."), cached=True) is Moved.MOVED
    job = store.get(hit)
    assert job.cached is True and job.device is None and job.started_at is None
    assert store.result(hit) == transcript("From the cache.")


def test_result_is_not_written_when_the_transition_is_refused(store: JobStore) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.CANCELLED)
    assert store.transition(task_id, State.COMPLETED, result=transcript()) is Moved.REFUSED
    assert store.result(task_id) is None


def test_final_jobs_expire(store: JobStore, redis_client: redis.Redis) -> None:
    task_id = new_job(store)
    key = job_key(task_id)
    store.transition(task_id, State.TRANSCRIBING)
    store.add_segment(task_id, Segment(id=0, start=0, end=1, text="x"), 0.5)
    for k in (key, f"{key}:history", f"{key}:segments"):
        assert redis_client.ttl(k) == -1
    store.transition(task_id, State.COMPLETED, result=transcript())
    for k in (key, f"{key}:history", f"{key}:result", f"{key}:segments"):
        assert 0 < redis_client.ttl(k) <= TTL, k
    # The shared queue set is never given a TTL.
    assert redis_client.ttl(keys.QUEUED_KEY) in (-1, -2)


@pytest.mark.parametrize("final", [State.FAILED, State.CANCELLED])
def test_failed_and_cancelled_jobs_expire_too(
    store: JobStore, redis_client: redis.Redis, final: State
) -> None:
    task_id = new_job(store)
    store.transition(task_id, final)
    assert 0 < redis_client.ttl(job_key(task_id)) <= TTL
    assert 0 < redis_client.ttl(f"{job_key(task_id)}:history") <= TTL


def test_set_fields_keeps_the_expiry_of_a_final_job(store: JobStore, redis_client: redis.Redis) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.COMPLETED, result=transcript())
    store.set_fields(task_id, webhook_state="delivered", webhook_attempts=1, webhook_last_status=200)
    job = store.get(task_id)
    assert (job.webhook_state, job.webhook_attempts, job.webhook_last_status) == ("delivered", 1, 200)
    assert 0 < redis_client.ttl(job_key(task_id)) <= TTL


def test_expired_job_is_not_found(store: JobStore, redis_client: redis.Redis) -> None:
    short = JobStore(redis_client, result_ttl=1)
    task_id = new_job(short)
    short.transition(task_id, State.COMPLETED, result=transcript())
    redis_client.pexpireat(job_key(task_id), 1)  # its TTL runs out now
    with pytest.raises(JobNotFound):
        short.get(task_id)


def test_set_fields_types_round_trip(store: JobStore) -> None:
    task_id = new_job(store)
    store.set_fields(task_id, duration=5.895, cached=True, language=None,
                     error={"code": "c", "message": "m"}, webhook_last_status=None)
    job = store.get(task_id)
    assert job.duration == pytest.approx(5.895)
    assert job.cached is True
    assert job.language is None
    assert job.error == {"code": "c", "message": "m"}
    assert job.webhook_last_status is None
    assert job.status == "queued"  # set_fields never changes the state


# -- waiting ---------------------------------------------------------------------------------
def listening(client: redis.Redis, task_id: str) -> None:
    """Block until someone listens on the job's events: a waiter is then waiting."""
    channel = events_channel(task_id)
    deadline = time.monotonic() + 5
    while cast(list[tuple[str, int]], client.pubsub_numsub(channel))[0][1] < 1:
        assert time.monotonic() < deadline, "nobody subscribed"
        time.sleep(0.01)


def test_wait_final_returns_promptly_when_another_thread_completes(
    store: JobStore, redis_client: redis.Redis
) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.TRANSCRIBING)
    completed_at: list[float] = []

    def finish() -> None:
        listening(redis_client, task_id)
        completed_at.append(time.monotonic())
        store.transition(task_id, State.COMPLETED, result=transcript())

    thread = threading.Thread(target=finish)
    thread.start()
    job = store.wait_final(task_id, timeout=10)
    returned_at = time.monotonic()
    thread.join()
    assert job.status == "completed"
    # Woken by the event, well before its once-a-second look at the record.
    assert returned_at - completed_at[0] < 0.7


def test_wait_final_returns_a_final_job_at_once(store: JobStore) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.FAILED)
    started = time.monotonic()
    assert store.wait_final(task_id, timeout=10).status == "failed"
    assert time.monotonic() - started < 0.2


def test_wait_final_gives_back_a_non_final_job_after_the_timeout(store: JobStore) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.EXTRACTING)
    started = time.monotonic()
    job = store.wait_final(task_id, timeout=0.5)
    elapsed = time.monotonic() - started
    assert job.status == "extracting" and not job.is_final
    assert 0.45 <= elapsed < 1.5


def test_wait_final_is_not_woken_into_returning_by_progress(
    store: JobStore, redis_client: redis.Redis
) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.TRANSCRIBING)

    def progress() -> None:
        listening(redis_client, task_id)
        for i in range(3):
            store.add_segment(task_id, Segment(id=i, start=i, end=i + 1, text="x"), 0.1 * (i + 1))

    thread = threading.Thread(target=progress)
    thread.start()
    job = store.wait_final(task_id, timeout=0.6)
    thread.join()
    assert job.status == "transcribing"
    assert job.progress == pytest.approx(0.3)


# -- events ----------------------------------------------------------------------------------
def test_events_are_published_on_the_job_channel(
    store: JobStore, subscriber: redis.client.PubSub
) -> None:
    task_id = new_job(store)
    assert events_channel(task_id) == f"wp:job:{task_id}:events"
    subscriber.subscribe(events_channel(task_id))
    subscriber.get_message(timeout=1.0)  # the subscription itself (ignored), lets it settle

    store.transition(task_id, State.EXTRACTING)
    store.transition(task_id, State.TRANSCRIBING)
    seg = Segment(id=0, start=0.0, end=1.0, text=" hi")
    store.add_segment(task_id, seg, 0.5)
    store.transition(task_id, State.TRANSCRIBING)  # ALREADY: no event
    store.transition(task_id, State.EXTRACTING)  # REFUSED: no event
    store.transition(task_id, State.FAILED, error={"code": "boom", "message": "it broke"})

    events = drain(subscriber)
    assert [e["type"] for e in events] == ["status", "status", "segment", "status"]
    assert [e.get("status") for e in events] == ["extracting", "transcribing", None, "failed"]
    assert all(e["task_id"] == task_id for e in events)
    assert all(isinstance(e["at"], float) for e in events if e["type"] == "status")
    assert events[2]["progress"] == 0.5
    assert Segment.from_dict(events[2]["segment"]) == seg
    assert events[3]["error"] == {"code": "boom", "message": "it broke"}
    assert "error" not in events[0]


def test_events_are_only_for_their_job(store: JobStore, subscriber: redis.client.PubSub) -> None:
    mine, other = new_job(store), new_job(store)
    subscriber.subscribe(events_channel(mine))
    subscriber.get_message(timeout=1.0)
    store.transition(other, State.EXTRACTING)
    store.transition(mine, State.CANCELLED)
    events = drain(subscriber)
    assert [(e["task_id"], e["status"]) for e in events] == [(mine, "cancelled")]


def test_events_iterator_ends_at_a_final_state(store: JobStore, redis_client: redis.Redis) -> None:
    task_id = new_job(store)
    store.transition(task_id, State.TRANSCRIBING)
    got: list[dict[str, Any]] = []
    ready = threading.Event()

    hub = EventHub(redis_client)

    def listen() -> None:
        # The API's stream (one subscriber per process, fanned out), read as the SSE route does.
        iterator = job_events(hub, store, task_id, max_seconds=5)
        ready.set()
        got.extend(event for event in iterator if event is not None)

    thread = threading.Thread(target=listen)
    thread.start()
    ready.wait(2)
    # The generator subscribes on its first next(): wait until Redis counts the subscriber.
    channel = events_channel(task_id)
    deadline = time.monotonic() + 5
    while redis_client.pubsub_numsub(channel)[0][1] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    store.add_segment(task_id, Segment(id=0, start=0, end=1, text="x"), 0.5)
    store.transition(task_id, State.COMPLETED, result=transcript())
    thread.join(5)
    hub.close()
    assert not thread.is_alive()
    # Where the job stood when the stream began, then what happened after; if the job was
    # already done by then, its segments and then its final state.
    assert [e["type"] for e in got] in (["status", "segment", "status"], ["segment", "status"])
    assert got[-1]["type"] == "status" and got[-1]["status"] in FINAL_STATES


# -- cancellation and attempt counting -------------------------------------------------------
@pytest.mark.parametrize("reached", [State.QUEUED, State.EXTRACTING, State.TRANSCRIBING])
def test_cancel_a_running_job(store: JobStore, redis_client: redis.Redis, reached: State) -> None:
    task_id = new_job(store)
    store.transition(task_id, reached)
    assert store.cancel_requested(task_id) is False
    assert store.cancel(task_id) is Moved.MOVED
    job = store.get(task_id)
    assert job.status == "cancelled" and job.is_final
    assert job.error is not None and job.error["code"] == "cancelled"
    assert store.cancel_requested(task_id) is True
    assert 0 < redis_client.ttl(f"{job_key(task_id)}:cancel") <= TTL
    assert store.queue_position(task_id) is None
    # Cancelling twice is harmless.
    assert store.cancel(task_id) is Moved.ALREADY
    assert store.cancel_requested(task_id) is True


@pytest.mark.parametrize("final", [State.COMPLETED, State.FAILED])
def test_cancel_a_finished_job_is_refused_and_leaves_no_flag(
    store: JobStore, redis_client: redis.Redis, final: State
) -> None:
    task_id = new_job(store)
    store.transition(task_id, final, result=transcript() if final is State.COMPLETED else None)
    before = snapshot(redis_client, task_id)
    assert store.cancel(task_id) is Moved.REFUSED
    assert store.cancel_requested(task_id) is False
    assert snapshot(redis_client, task_id) == before


def test_cancel_unknown_job_raises(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.cancel("nope")


def test_cancel_unknown_job_leaves_no_key(store: JobStore, redis_client: redis.Redis) -> None:
    with pytest.raises(JobNotFound):
        store.cancel("nope")
    assert redis_client.keys(keys.job_key("nope") + "*") == []


def test_count_attempt(store: JobStore) -> None:
    task_id = new_job(store)
    assert store.count_attempt(task_id, "extract") == 1
    assert store.count_attempt(task_id, "extract") == 2
    assert store.count_attempt(task_id, "transcribe") == 1
    assert store.get(task_id).status == "queued"


def test_count_attempt_on_unknown_job_leaves_no_key(store: JobStore, redis_client: redis.Redis) -> None:
    with pytest.raises(JobNotFound):
        store.count_attempt("gone", "extract")
    assert not redis_client.exists(job_key("gone"))
