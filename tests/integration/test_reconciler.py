"""The reconciler (pipeline/worker/reconciler.py) and the housekeeping runner
(pipeline/worker/housekeeping.py) on the real Redis and RabbitMQ. Time passing is given as ``now``
rather than waited for."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from pipeline import keys
from pipeline.cache import ResultCache
from pipeline.jobs import JobStore, State, new_task_id
from pipeline.keys import ACTIVE_KEY, WEBHOOKS_DUE_KEY, job_key
from pipeline.options import TranscribeOptions
from pipeline.queues import (
    CHUNK_ACTOR,
    EXTRACT_ACTOR,
    EXTRACT_QUEUE,
    NOTIFY_ACTOR,
    TRANSCRIBE_ACTOR,
)
from pipeline.rabbitmq import build_broker
from pipeline.settings import Settings
from pipeline.stores import Stores
from pipeline.transcript import Transcript
from pipeline.worker import reconciler
from pipeline.worker.housekeeping import Runner
from tests.support.stack import own_vhost

AFTER = 180


class Sent:
    """Records the messages the reconciler sends (the RabbitMQ path has its own test)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple[Any, ...]]] = []

    def __call__(self, actor: str, *args: Any) -> None:
        self.messages.append((actor, args))


@pytest.fixture
def stores(settings: Settings, redis_client: redis.Redis) -> Stores:
    s = dataclasses.replace(settings, reconcile_after_seconds=AFTER, max_retries=2)
    return Stores(settings=s, redis=redis_client, jobs=JobStore(redis_client, result_ttl=600),
                  cache=ResultCache(redis_client, enabled=True, size=10, ttl=60))


def later(seconds: float = AFTER + 1) -> float:
    return time.time() + seconds


def new_job(stores: Stores, **fields: Any) -> str:
    task_id = new_task_id()
    stores.jobs.create(task_id, TranscribeOptions(), **fields)
    return task_id


def test_a_job_recorded_but_never_queued_is_sent_again(stores: Stores) -> None:
    task_id = new_job(stores)
    sent = Sent()
    assert reconciler.reconcile(stores, sent).checked == 0  # not idle long enough yet
    report = reconciler.reconcile(stores, sent, now=later())
    assert report.resent == ((task_id, EXTRACT_ACTOR),) and sent.messages == [(EXTRACT_ACTOR, (task_id,))]
    # Its clock restarted: the next look, soon after, leaves it alone.
    assert reconciler.reconcile(stores, sent, now=later(AFTER + 5)).checked == 0


def test_past_max_retries_resends_without_progress_the_job_fails_saying_why(stores: Stores) -> None:
    task_id = new_job(stores, webhook_url="http://127.0.0.1:9/hook", webhook_state="pending")
    sent = Sent()
    for n in range(1, 3):
        report = reconciler.reconcile(stores, sent, now=later(n * (AFTER + 1)))
        assert report.resent == ((task_id, EXTRACT_ACTOR),)
    report = reconciler.reconcile(stores, sent, now=later(3 * (AFTER + 1)))
    assert report.failed == (task_id,)
    job = stores.jobs.get(task_id)
    assert job.status == State.FAILED and job.error is not None
    assert job.error["code"] == "lost"
    assert job.error["message"].startswith("lost in the pipeline: re-sent 2 times without progress")
    assert stores.redis.zscore(ACTIVE_KEY, task_id) is None
    # Its webhook says so: in the outbox by the transition, and a notify message to be quick.
    assert stores.redis.zscore(WEBHOOKS_DUE_KEY, task_id) is not None
    assert sent.messages[-1] == (NOTIFY_ACTOR, (task_id,))


def test_progress_starts_the_count_again(stores: Stores) -> None:
    task_id = new_job(stores)
    sent = Sent()
    reconciler.reconcile(stores, sent, now=later())
    reconciler.reconcile(stores, sent, now=later(2 * (AFTER + 1)))
    stores.jobs.transition(task_id, State.EXTRACTING)  # the second re-send got it moving
    report = reconciler.reconcile(stores, sent, now=later(AFTER + 1))
    assert report.resent == ((task_id, EXTRACT_ACTOR),) and not report.failed
    assert stores.redis.hget(job_key(task_id), "reconcile_resends") == "1"


def test_a_job_whose_stage_holds_a_lease_is_left_alone(stores: Stores) -> None:
    task_id = new_job(stores)
    stores.jobs.transition(task_id, State.TRANSCRIBING)
    assert stores.leases.take(task_id, "worker-1", 30)
    sent = Sent()
    report = reconciler.reconcile(stores, sent, now=later())
    assert report.running == (task_id,) and not sent.messages


def test_each_stage_gets_its_own_message(stores: Stores) -> None:
    extracted = new_job(stores)
    stores.jobs.transition(extracted, State.EXTRACTING)
    stores.jobs.set_fields(extracted, stage="waiting-for-transcriber")
    transcribing = new_job(stores)
    stores.jobs.transition(transcribing, State.TRANSCRIBING)
    chunked = new_job(stores)
    stores.jobs.transition(chunked, State.TRANSCRIBING)
    stores.jobs.set_fields(chunked, chunks=json.dumps([[0, 10], [10, 20], [20, 30]]))
    stores.jobs.save_chunk(chunked, 1, Transcript(text="x", language="en", duration=1.0))
    stores.leases.take(chunked, "w", 30, ":chunk2")  # chunk 2 runs: only its lease is held
    sent = Sent()
    reconciler.reconcile(stores, sent, now=later())
    assert sorted(sent.messages) == sorted([
        (TRANSCRIBE_ACTOR, (extracted,)), (TRANSCRIBE_ACTOR, (transcribing,))])
    stores.redis.delete(job_key(chunked) + ":lease:chunk2")
    reconciler.reconcile(stores, sent, now=later())
    assert sent.messages[2:] == [(CHUNK_ACTOR, (chunked, 0)), (CHUNK_ACTOR, (chunked, 2))]


def test_a_queue_with_a_backlog_means_the_job_may_be_waiting_in_it(stores: Stores) -> None:
    task_id = new_job(stores)
    sent = Sent()
    report = reconciler.reconcile(stores, sent, backlog=lambda queue: 3, now=later())
    assert report.waiting == (task_id,) and not sent.messages
    assert stores.redis.hget(job_key(task_id), "reconcile_resends") is None


def test_final_jobs_leave_the_index_and_a_pending_webhook_gets_its_entry(stores: Stores) -> None:
    task_id = new_job(stores, webhook_url="http://127.0.0.1:9/hook", webhook_state="pending")
    stores.jobs.transition(task_id, State.COMPLETED)
    # As a job that ended before the outbox existed: still indexed, no entry.
    stores.redis.zadd(ACTIVE_KEY, {task_id: time.time()})
    stores.redis.zrem(WEBHOOKS_DUE_KEY, task_id)
    gone = new_task_id()
    stores.redis.zadd(ACTIVE_KEY, {gone: time.time()})
    report = reconciler.reconcile(stores, Sent(), now=later())
    assert report.webhooks == (task_id,) and sorted(report.forgotten) == sorted([task_id, gone])
    assert stores.redis.zscore(WEBHOOKS_DUE_KEY, task_id) is not None
    assert stores.redis.zcard(ACTIVE_KEY) == 0


@pytest.fixture(scope="module")
def own_rabbitmq() -> Iterator[str]:
    with own_vhost("whisper-pipeline-reconciler") as url:
        yield url


def test_the_message_reaches_rabbitmq_and_then_counts_as_a_backlog(stores: Stores, own_rabbitmq: str) -> None:
    broker = build_broker(dataclasses.replace(stores.settings, rabbitmq_url=own_rabbitmq))
    try:
        broker.declare_queue(EXTRACT_QUEUE)
        broker.flush(EXTRACT_QUEUE)
        backlog = reconciler.broker_backlog(broker)
        assert backlog(EXTRACT_QUEUE) == 0
        task_id = new_job(stores)
        report = reconciler.reconcile(stores, reconciler.broker_sender(broker), backlog=backlog, now=later())
        assert report.resent == ((task_id, EXTRACT_ACTOR),)
        assert backlog(EXTRACT_QUEUE) == 1
        # The re-sent message is still there: the next look waits for it instead of failing the job.
        again = reconciler.reconcile(stores, reconciler.broker_sender(broker), backlog=backlog,
                                     now=later(5 * AFTER))
        assert again.waiting == (task_id,) and not again.failed
    finally:
        broker.flush_all()
        broker.close()


def test_one_process_at_a_time_and_once_a_period(stores: Stores) -> None:
    task_id = new_job(stores)
    sent = Sent()
    runners = [Runner(stores, sent) for _ in range(4)]
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def run(runner: Runner) -> None:
        barrier.wait()
        results.append(runner.run_exclusive(later()))

    threads = [threading.Thread(target=run, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ran = [r for r in results if r is not None]
    assert len(ran) == 1 and ran[0].report.resent == ((task_id, EXTRACT_ACTOR),)
    assert sent.messages == [(EXTRACT_ACTOR, (task_id,))]
    assert 0 < int(stores.redis.ttl(keys.HOUSEKEEPING_RAN_KEY)) <= stores.settings.reconcile_period_seconds  # type: ignore[arg-type]
    # While another process holds the lock (a slow run), nobody else starts one.
    lock = stores.redis.lock(keys.HOUSEKEEPING_LOCK_KEY, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert runners[0].run_exclusive(later(), force=True) is None
    finally:
        lock.release()
    assert runners[0].run_exclusive(later(), force=True) is not None


def test_a_job_whose_message_is_in_a_worker_s_hands_is_not_sent_again(stores: Stores) -> None:
    """A dead worker's message comes back while its lease still holds: the copy that waits for
    the lease (held in a consumer's memory, counted in no queue) restarts the job's clock."""
    task_id = new_job(stores)
    stores.jobs.transition(task_id, State.TRANSCRIBING)
    sent = Sent()
    reconciler.touch(stores.redis, task_id, now=later(AFTER))
    assert reconciler.reconcile(stores, sent, now=later(AFTER + 10)).checked == 0
    assert sent.messages == []
    # Untouched, the same job is sent again once it has been idle long enough.
    report = reconciler.reconcile(stores, sent, now=later(2 * AFTER + 5))
    assert report.resent == ((task_id, TRANSCRIBE_ACTOR),)
    # A job that ended has left the index, and a late message does not bring it back.
    stores.jobs.transition(task_id, State.CANCELLED)
    reconciler.touch(stores.redis, task_id)
    assert stores.redis.zscore(ACTIVE_KEY, task_id) is None
