"""Webhook deliveries from the outbox (pipeline/outbox.py, pipeline/webhooks.py) on the real
Redis, delivered over HTTP to receivers on loopback."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from standardwebhooks.webhooks import Webhook

from pipeline import keys, outbox
from pipeline.cache import ResultCache
from pipeline.errors import JobConflict
from pipeline.jobs import JobStore, State, new_task_id
from pipeline.keys import WEBHOOKS_DUE_KEY
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.stores import Stores
from pipeline.transcript import Segment, Transcript
from tests.support.helpers import Receiver
from tests.support.stack import WEBHOOK_SECRET


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def make_stores(settings: Settings, client: redis.Redis, **overrides: object) -> Stores:
    s = dataclasses.replace(settings, webhook_secret=WEBHOOK_SECRET, webhook_allow_private=True,
                            **overrides)  # type: ignore[arg-type]
    return Stores(settings=s, redis=client, jobs=JobStore(client, result_ttl=600),
                  cache=ResultCache(client, enabled=True, size=10, ttl=60))


def finished_job(stores: Stores, url: str, state: State = State.COMPLETED) -> str:
    task_id = new_task_id()
    stores.jobs.create(task_id, TranscribeOptions(), webhook_url=url, webhook_state="pending",
                       result_url=f"http://example.test/{task_id}")
    result = Transcript(text="Ask not.", language="en", duration=1.0,
                        segments=(Segment(id=0, start=0.0, end=1.0, text=" Ask not."),))
    stores.jobs.transition(task_id, state, result=result if state is State.COMPLETED else None)
    return task_id


def sweep_until_settled(stores: Stores, task_id: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outbox.sweep(stores)
        state = stores.jobs.get(task_id).webhook_state
        if state != "pending":
            return state
        time.sleep(0.1)
    raise AssertionError(f"webhook of {task_id} still pending after {timeout} s")


def test_a_finished_job_is_in_the_outbox_with_its_state(settings: Settings, redis_client: redis.Redis) -> None:
    stores = make_stores(settings, redis_client)
    before = time.time()
    task_id = finished_job(stores, "http://127.0.0.1:9/hook")
    due = outbox.Outbox(redis_client).due_at(task_id)
    assert due is not None and before <= due <= time.time()
    # A job without a webhook never enters it.
    other = new_task_id()
    stores.jobs.create(other, TranscribeOptions())
    stores.jobs.transition(other, State.FAILED)
    assert outbox.Outbox(redis_client).due_at(other) is None


def test_503_with_retry_after_twice_then_delivered_with_a_valid_signature(
        settings: Settings, redis_client: redis.Redis, receivers: list[Receiver]) -> None:
    receiver = Receiver([(503, {"Retry-After": "1"}), (503, {"Retry-After": "1"})])
    receivers.append(receiver)
    # The schedule says "at once" every time: only Retry-After spaces the attempts out.
    stores = make_stores(settings, redis_client, webhook_schedule_seconds=(0,), webhook_max_attempts=5)
    task_id = finished_job(stores, receiver.url)
    assert sweep_until_settled(stores, task_id) == "delivered"
    job = stores.jobs.get(task_id)
    assert job.webhook_attempts == 3 and job.webhook_last_status == 200
    assert len(receiver.requests) == 3
    times = [at for _, _, at in receiver.requests]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(times)), times
    headers, body, _ = receiver.requests[-1]
    payload = Webhook(WEBHOOK_SECRET).verify(body, headers)
    assert payload["type"] == "transcription.completed" and payload["data"]["task_id"] == task_id
    assert payload["data"]["transcript"]["text"] == "Ask not."
    # Every attempt is the same message: receivers can drop duplicates by its id.
    assert len({h["webhook-id"] for h, _, _ in receiver.requests}) == 1
    assert redis_client.zscore(WEBHOOKS_DUE_KEY, task_id) is None


def test_the_schedule_spaces_attempts_and_gives_up_after_the_last(
        settings: Settings, redis_client: redis.Redis, receivers: list[Receiver]) -> None:
    receiver = Receiver([(500, {})] * 10)
    receivers.append(receiver)
    stores = make_stores(settings, redis_client, webhook_schedule_seconds=(0, 5, 300),
                         webhook_max_attempts=3)
    task_id = finished_job(stores, receiver.url, State.FAILED)
    box = outbox.Outbox(redis_client)
    first = outbox.attempt(stores, task_id)
    assert first is not None and first.state == "pending" and first.status == 500
    assert first.next_at is not None and 4 < first.next_at - time.time() <= 5
    # Not due yet: a notify message or a sweep now does nothing.
    assert outbox.attempt(stores, task_id) is None and outbox.sweep(stores) == []
    second = outbox.attempt(stores, task_id, now=time.time() + 6)
    assert second is not None and second.number == 2 and second.next_at is not None
    assert 295 < second.next_at - time.time() <= 300
    third = outbox.attempt(stores, task_id, now=time.time() + 301)
    assert third is not None and third.state == "failed" and third.next_at is None
    job = stores.jobs.get(task_id)
    assert (job.webhook_state, job.webhook_attempts, job.webhook_last_status) == ("failed", 3, 500)
    assert box.due_at(task_id) is None and len(receiver.requests) == 3
    assert json.loads(receiver.requests[0][1])["type"] == "transcription.failed"


def test_a_rejection_is_not_retried(settings: Settings, redis_client: redis.Redis,
                                    receivers: list[Receiver]) -> None:
    receiver = Receiver([(410, {})])
    receivers.append(receiver)
    stores = make_stores(settings, redis_client)
    task_id = finished_job(stores, receiver.url)
    assert sweep_until_settled(stores, task_id) == "failed"
    assert len(receiver.requests) == 1


def test_sweepers_in_parallel_deliver_each_event_once(
        settings: Settings, redis_client: redis.Redis, receivers: list[Receiver]) -> None:
    receiver = Receiver([])
    receivers.append(receiver)
    stores = make_stores(settings, redis_client)
    tasks = [finished_job(stores, receiver.url) for _ in range(12)]
    barrier = threading.Barrier(4)

    def sweeper() -> None:
        barrier.wait()
        outbox.sweep(stores)

    threads = [threading.Thread(target=sweeper) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = sorted(json.loads(body)["data"]["task_id"] for _, body, _ in receiver.requests)
    assert ids == sorted(tasks)
    assert all(stores.jobs.get(t).webhook_state == "delivered" for t in tasks)


def test_a_deliverer_that_dies_holding_a_claim_only_delays_the_delivery(
        settings: Settings, redis_client: redis.Redis, receivers: list[Receiver]) -> None:
    receiver = Receiver([])
    receivers.append(receiver)
    stores = make_stores(settings, redis_client)
    task_id = finished_job(stores, receiver.url)
    box = outbox.Outbox(redis_client)
    now = time.time()
    token = box.claim(task_id, now, hold=30)
    assert token is not None and box.claim(task_id, now, hold=30) is None
    assert outbox.sweep(stores) == []  # claimed: nobody else attempts it
    late = outbox.attempt(stores, task_id, now=now + 31)  # the claim lapsed: due again
    assert late is not None and late.state == "delivered"
    assert not box.finish(task_id, token, None)  # the dead deliverer's token is worthless now
    assert len(receiver.requests) == 1


def test_the_owner_asks_for_redelivery(settings: Settings, redis_client: redis.Redis,
                                       receivers: list[Receiver]) -> None:
    receiver = Receiver([(404, {})])
    receivers.append(receiver)
    stores = make_stores(settings, redis_client)
    task_id = finished_job(stores, receiver.url)
    assert sweep_until_settled(stores, task_id) == "failed"
    job = outbox.redeliver(stores, task_id)
    assert (job.webhook_state, job.webhook_attempts) == ("pending", 0)
    assert sweep_until_settled(stores, task_id) == "delivered"
    assert receiver.requests[0][0]["webhook-id"] == receiver.requests[1][0]["webhook-id"]
    running = new_task_id()
    stores.jobs.create(running, TranscribeOptions(), webhook_url=receiver.url, webhook_state="pending")
    with pytest.raises(JobConflict, match="queued"):
        outbox.redeliver(stores, running)
    silent = new_task_id()
    stores.jobs.create(silent, TranscribeOptions())
    stores.jobs.transition(silent, State.CANCELLED)
    with pytest.raises(JobConflict, match="no webhook_url"):
        outbox.redeliver(stores, silent)


def test_a_job_that_expired_leaves_the_outbox(settings: Settings, redis_client: redis.Redis) -> None:
    stores = make_stores(settings, redis_client)
    task_id = finished_job(stores, "http://127.0.0.1:9/hook")
    redis_client.delete(keys.job_key(task_id))
    assert outbox.sweep(stores) == []
    assert outbox.Outbox(redis_client).due_at(task_id) is None


def test_a_header_http_cannot_carry_is_one_failed_delivery_beside_healthy_ones(
        settings: Settings, redis_client: redis.Redis, receivers: list[Receiver]) -> None:
    """A job stored with a header value that cannot be encoded (written before the check at
    upload, or by hand) uses its attempts on schedule and ends failed; the sweep that meets it
    still delivers every other job's event."""
    receiver = Receiver([])
    receivers.append(receiver)
    stores = make_stores(settings, redis_client, webhook_schedule_seconds=(0,), webhook_max_attempts=3)
    healthy = [finished_job(stores, receiver.url) for _ in range(3)]
    poisoned = new_task_id()
    stores.jobs.create(poisoned, TranscribeOptions(), webhook_url=receiver.url, webhook_state="pending",
                       webhook_auth_header_name="X-Webhook-Token", webhook_auth_header_value="tok\u2028en")
    stores.jobs.transition(poisoned, State.FAILED)
    assert sweep_until_settled(stores, poisoned) == "failed"
    job = stores.jobs.get(poisoned)
    assert job.webhook_attempts == 3 and job.webhook_last_status is None
    assert "could not be" in stores.redis.hget(keys.job_key(poisoned), "webhook_last_error")  # type: ignore[operator]
    assert outbox.Outbox(redis_client).due_at(poisoned) is None
    assert all(stores.jobs.get(t).webhook_state == "delivered" for t in healthy)
    assert sorted(json.loads(b)["data"]["task_id"] for _, b, _ in receiver.requests) == sorted(healthy)
