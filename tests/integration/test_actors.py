"""The actors' failure policy, time limit, worker-death count and recycling, each with a real
Dramatiq worker on a StubBroker (one actor at a time; the pipeline itself runs on RabbitMQ)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Retries, TimeLimit

from pipeline import keys
from pipeline.errors import MediaDecodeError, TranscriptionError
from pipeline.jobs import State, new_task_id
from pipeline.options import TranscribeOptions
from pipeline.worker.context import Context
from pipeline.worker.middleware import RecycleAfter
from pipeline.worker.stages import Next

# Declaring the actors binds them to the global broker: make it a stub before they are imported.
dramatiq.set_broker(StubBroker())
from pipeline.worker import actors  # noqa: E402


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    stub = StubBroker(middleware=[
        TimeLimit(time_limit=400, interval=50),
        CurrentMessage(),
        Retries(max_retries=1, min_backoff=10, max_backoff=20),
    ])
    stub.emit_after("process_boot")
    yield stub
    stub.close()


def run_actor(broker: StubBroker, fn: Callable[[str], None], task_id: str) -> None:
    actor = dramatiq.actor(fn, broker=broker, queue_name="test", actor_name=f"t{time.monotonic_ns()}")
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        actor.send(task_id)
        broker.join("test", fail_fast=False)
        worker.join()
    finally:
        worker.stop()


def new_job(ctx: Context) -> str:
    task_id = new_task_id()
    ctx.jobs.create(task_id, TranscribeOptions())
    ctx.jobs.transition(task_id, State.EXTRACTING)
    return task_id


def test_a_job_over_the_time_limit_fails_and_is_not_retried(ctx: Context, broker: StubBroker) -> None:
    task_id = new_job(ctx)
    calls: list[float] = []

    def slow(_: Context, __: str) -> Next | None:
        calls.append(time.monotonic())
        for _ in range(100):  # interruptible: the limit is raised between bytecodes
            time.sleep(0.05)
        return None

    run_actor(broker, lambda t: actors._attempt(ctx, slow, "transcribe", t) and None, task_id)
    job = ctx.jobs.get(task_id)
    assert job.status == "failed" and job.error is not None
    assert job.error["code"] == "time_limit" and "JOB_TIME_LIMIT_SECONDS" in job.error["message"]
    assert len(calls) == 1


def test_transient_errors_are_retried_then_succeed(ctx: Context, broker: StubBroker) -> None:
    task_id = new_job(ctx)
    calls: list[int] = []

    def flaky(c: Context, t: str) -> Next | None:
        calls.append(1)
        if len(calls) == 1:
            raise TranscriptionError("the GPU driver hiccuped")
        c.jobs.transition(t, State.COMPLETED)
        return None

    run_actor(broker, lambda t: actors._attempt(ctx, flaky, "transcribe", t) and None, task_id)
    assert len(calls) == 2
    assert ctx.jobs.get(task_id).status == "completed"


def test_transient_errors_fail_the_job_on_the_last_attempt(ctx: Context, broker: StubBroker) -> None:
    task_id = new_job(ctx)
    calls: list[int] = []

    def broken(_: Context, __: str) -> Next | None:
        calls.append(1)
        raise ConnectionError("network down")

    run_actor(broker, lambda t: actors._attempt(ctx, broken, "transcribe", t) and None, task_id)
    assert len(calls) == 2  # MAX_RETRIES=1 in the test settings: the first try and one retry
    job = ctx.jobs.get(task_id)
    assert job.status == "failed" and job.error is not None
    assert job.error["code"] == "transcription_error" and "2 attempts" in job.error["message"]


def test_bad_media_is_not_retried(ctx: Context, broker: StubBroker) -> None:
    task_id = new_job(ctx)
    calls: list[int] = []

    def unreadable(_: Context, __: str) -> Next | None:
        calls.append(1)
        raise MediaDecodeError("No audio could be decoded from the file.")

    run_actor(broker, lambda t: actors._attempt(ctx, unreadable, "extract", t) and None, task_id)
    assert len(calls) == 1
    job = ctx.jobs.get(task_id)
    assert job.status == "failed" and job.error == {
        "code": "media_decode_error", "message": "No audio could be decoded from the file."}


def test_a_job_whose_worker_keeps_dying_ends_failed(ctx: Context) -> None:
    task_id = new_job(ctx)
    # Each start is counted before the stage runs; a killed worker never gets further.
    for _ in range(ctx.settings.max_retries + 1):
        ctx.jobs.count_attempt(task_id, "transcribe")
    ran: list[int] = []
    following = actors._attempt(ctx, lambda c, t: ran.append(1) or None, "transcribe", task_id)
    assert ran == [] and following is Next.NOTIFY
    job = ctx.jobs.get(task_id)
    assert job.status == "failed" and job.error is not None and job.error["code"] == "worker_died"
    assert "stopped 2 times" in job.error["message"]


def test_workers_recycle_after_max_tasks_per_child() -> None:
    recycled: list[float] = []
    stub = StubBroker(middleware=[RecycleAfter(3, recycle=lambda: recycled.append(time.monotonic()))])
    stub.emit_after("process_boot")
    done: list[Any] = []
    actor = dramatiq.actor(lambda n: done.append(n), broker=stub, queue_name="r", actor_name="count")
    worker = dramatiq.Worker(stub, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        for n in range(5):
            actor.send(n)
        stub.join("r")
        worker.join()
    finally:
        worker.stop()
    assert sorted(done) == [0, 1, 2, 3, 4]  # nothing is lost while the recycle is asked for
    assert len(recycled) == 1


def test_a_second_delivery_stays_out_while_the_job_runs(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """RabbitMQ redelivers a message whose channel closed under a running job (its consumer
    timeout); the copy must neither run the job twice nor be lost."""
    monkeypatch.setattr(actors, "worker_context", lambda: ctx)
    stub = dramatiq.get_broker()
    assert isinstance(stub, StubBroker)
    stub.flush_all()
    task_id = new_job(ctx)
    assert ctx.leases.take(task_id, "the-running-delivery", 30)
    # The transcribe actor itself: it stays out, and looks again later as a delayed message
    # of its own.
    actors.transcribe_audio.fn(task_id)
    assert ctx.jobs.get(task_id).status is State.EXTRACTING
    delayed = stub.queues["transcribe.DQ"]
    assert delayed.qsize() == 1
    message = dramatiq.Message.decode(delayed.get())
    assert message.actor_name == "transcribe_audio" and message.args == (task_id,)
    assert message.options["eta"] > time.time() * 1000
    # Once the holder is gone, the stage runs (and the lease is given back afterwards).
    ctx.leases.drop(task_id, "the-running-delivery")
    ran: list[int] = []
    actors.run_stage(lambda c, t: ran.append(1) or None, "transcribe", task_id,
                     lease=actors.JOB_LEASE, retry=lambda delay: pytest.fail("the lease was free"))
    assert ran == [1]
    assert ctx.leases.take(task_id, "next", 30)


def test_extract_and_transcribe_share_the_job_lease_and_chunks_have_their_own(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actors, "worker_context", lambda: ctx)
    stub = dramatiq.get_broker()
    assert isinstance(stub, StubBroker)
    stub.flush_all()
    task_id = new_job(ctx)
    assert ctx.leases.take(task_id, "a-transcription", 30)
    actors.extract_audio.fn(task_id)
    assert stub.queues["extract.DQ"].qsize() == 1
    # Chunk 0 is held elsewhere; chunk 1 is free to run beside it.
    assert ctx.leases.take(task_id, "chunk-zero", 30, ":chunk0")
    actors.transcribe_chunk.fn(task_id, 0)
    message = dramatiq.Message.decode(stub.queues["transcribe.DQ"].get())
    assert message.actor_name == "transcribe_chunk" and message.args == (task_id, 0)
    ran: list[str] = []
    actors.run_stage(lambda c, t: ran.append(t) or None, "chunk1", task_id, lease=":chunk1",
                     retry=lambda delay: pytest.fail("chunk 1's lease was free"))
    assert ran == [task_id]


def test_every_answer_of_a_stage_sends_its_follow_up(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actors, "worker_context", lambda: ctx)
    stub = dramatiq.get_broker()
    assert isinstance(stub, StubBroker)
    assert set(actors.FOLLOW_UP) == set(Next)
    task_id = new_job(ctx)
    ctx.jobs.set_fields(task_id, chunks="[[0, 100], [100, 200], [200, 300]]",
                        webhook_url="http://127.0.0.1:9/hook")
    sent: dict[Next, list[tuple[str, tuple[object, ...]]]] = {}
    for following in Next:
        stub.flush_all()
        actors.run_stage(lambda c, t, f=following: f, "transcribe", task_id, lease=actors.JOB_LEASE,
                         retry=lambda delay: pytest.fail("the lease was free"))
        messages = [dramatiq.Message.decode(m) for q in stub.queues.values() for m in list(q.queue)]
        sent[following] = sorted((m.actor_name, tuple(m.args)) for m in messages)
    assert sent == {
        Next.TRANSCRIBE: [("transcribe_audio", (task_id,))],
        Next.CHUNKS: [("transcribe_chunk", (task_id, i)) for i in range(3)],
        Next.NOTIFY: [("notify_webhook", (task_id,))],
    }
    # Without a webhook there is no one to notify.
    ctx.jobs.set_fields(task_id, webhook_url="")
    stub.flush_all()
    actors.run_stage(lambda c, t: Next.NOTIFY, "transcribe", task_id, lease=actors.JOB_LEASE,
                     retry=lambda delay: pytest.fail("the lease was free"))
    assert all(q.qsize() == 0 for q in stub.queues.values())


def test_lease_is_renewed_and_dropped_only_by_its_holder(ctx: Context) -> None:
    task_id = new_job(ctx)
    assert ctx.leases.take(task_id, "a", 2)
    assert not ctx.leases.take(task_id, "b", 2)
    assert not ctx.leases.renew(task_id, "b", 30)
    assert ctx.leases.renew(task_id, "a", 30)
    assert ctx.redis.ttl(keys.job_lease_key(task_id)) > 2
    ctx.leases.drop(task_id, "b")
    assert not ctx.leases.take(task_id, "b", 2)
    ctx.leases.drop(task_id, "a")
    assert ctx.leases.take(task_id, "b", 2)
