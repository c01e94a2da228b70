"""Webhook deliveries from an outbox: due deliveries kept in Redis, so none is lost with a message.

A job that reaches a final state with a webhook is put in the outbox by the same transition
script that ends it (``pipeline.jobs``): a sorted set of task ids scored by when the next
attempt is due. Whoever delivers (the notify actor right away, or the sweeper that every
worker runs) first claims the entry: one script that moves its due time past the claim's
lifetime and records a token. A deliverer that dies mid-attempt leaves the entry to come due
again when the claim lapses; one that finishes settles it (delivered or given up) or
reschedules it, checked against its token so that a slow deliverer never undoes a newer one.

The job's webhook fields tell its owner how delivery stands: ``webhook_state`` goes
``pending -> delivered | failed`` with ``webhook_attempts``, ``webhook_last_status``,
``webhook_last_error`` and ``webhook_next_at``; the job's own state never changes here.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, cast

import redis
import requests

from pipeline import webhooks
from pipeline.errors import JobConflict, JobNotFound
from pipeline.jobs import Job, JobStore
from pipeline.keys import WEBHOOKS_DUE_KEY, job_key, webhook_claim_key
from pipeline.metrics import count_webhook
from pipeline.stores import Stores

log = logging.getLogger(__name__)

# Longer than one attempt can take (connect and read timeouts), so a live claim never lapses.
CLAIM_SECONDS = 3 * webhooks.TIMEOUT_SECONDS + 30
SWEEP_BATCH = 200
SWEEP_THREADS = 4

# KEYS: due set, claim key. ARGV: task id, now, claim seconds, token
_CLAIM = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[3])
return 1
"""

# KEYS: due set, claim key. ARGV: task id, token, next due time ('' to settle)
_FINISH = """
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
"""


# KEYS: due set, claim key, job hash. ARGV: task id, now, '1' to start a fresh schedule
# The state and the entry change together: a sweeper never finds the entry beside the old
# (settled) state and drops it.
_REDELIVER = """
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[3], 'webhook_state', 'pending', 'webhook_attempts', '0', 'webhook_last_error', '')
end
redis.call('HSET', KEYS[3], 'webhook_next_at', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""


class Outbox:
    """The due set and its claims (every key here has a TTL or is settled by the sweeper)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._redeliver = client.register_script(_REDELIVER)

    def schedule(self, task_id: str, at: float, *, only_new: bool = False) -> bool:
        """Make a delivery due at ``at``; with ``only_new``, leave one already there alone."""
        added = self.redis.zadd(WEBHOOKS_DUE_KEY, {task_id: at}, nx=only_new)
        return bool(added)

    def due_at(self, task_id: str) -> float | None:
        score = cast(float | None, self.redis.zscore(WEBHOOKS_DUE_KEY, task_id))
        return None if score is None else float(score)

    def due(self, now: float, limit: int = SWEEP_BATCH) -> list[str]:
        return cast(list[str], self.redis.zrangebyscore(WEBHOOKS_DUE_KEY, "-inf", now, start=0, num=limit))

    def claimed(self, task_id: str) -> bool:
        return bool(self.redis.exists(webhook_claim_key(task_id)))

    def claim(self, task_id: str, now: float, hold: float = CLAIM_SECONDS) -> str | None:
        """The token that lets the caller attempt this delivery, or None: not due, or taken."""
        token = uuid.uuid4().hex
        won = self._claim(keys=[WEBHOOKS_DUE_KEY, webhook_claim_key(task_id)],
                          args=[task_id, repr(now), int(hold), token])
        return token if won else None

    def finish(self, task_id: str, token: str, next_at: float | None) -> bool:
        """Settle the delivery (``next_at`` None) or make it due again; False when the claim
        was lost meanwhile (it lapsed and another deliverer took the entry)."""
        return bool(self._finish(keys=[WEBHOOKS_DUE_KEY, webhook_claim_key(task_id)],
                                 args=[task_id, token, "" if next_at is None else repr(next_at)]))

    def redeliver(self, task_id: str, now: float, *, reset: bool) -> bool | None:
        """Make the delivery due now (with a fresh schedule when ``reset``); False while an
        attempt is being made (it is left to finish), None when the job does not exist."""
        rc = int(cast(int, self._redeliver(keys=[WEBHOOKS_DUE_KEY, webhook_claim_key(task_id), job_key(task_id)],
                                           args=[task_id, repr(now), "1" if reset else "0"])))
        return None if rc < 0 else bool(rc)

    def drop(self, task_id: str) -> None:
        self.redis.zrem(WEBHOOKS_DUE_KEY, task_id)


@dataclass(frozen=True)
class Attempt:
    task_id: str
    number: int  # attempts made so far, this one included
    state: str  # delivered, pending (another attempt is due at next_at) or failed
    status: int | None  # the receiver's HTTP status, None when it never answered
    detail: str
    next_at: float | None = None


def wants_delivery(job: Job) -> bool:
    return bool(job.webhook_url) and job.is_final and job.webhook_state in ("pending", "")


def attempt(stores: Stores, task_id: str, *, http: requests.Session | None = None,
            now: float | None = None, outbox: Outbox | None = None) -> Attempt | None:
    """Make the job's next webhook attempt if it is due and nobody else is making it.

    Returns what happened, or None when there was nothing to do now (not due, claimed by
    another deliverer, already settled, no webhook). A final job whose pending delivery has no
    entry (it ended before the outbox existed) is given one first, so a notify message for it
    still delivers."""
    outbox = outbox or Outbox(stores.redis)
    now = time.time() if now is None else now
    try:
        job = stores.jobs.get(task_id)
    except JobNotFound:
        outbox.drop(task_id)  # the record expired: nobody left to tell
        return None
    if not wants_delivery(job):
        if outbox.due_at(task_id) is not None and not outbox.claimed(task_id):
            outbox.drop(task_id)
        return None
    outbox.schedule(task_id, now, only_new=True)
    token = outbox.claim(task_id, now)
    if token is None:
        return None
    try:
        # Read again under the claim: a deliverer that finished just before us settled it.
        job = stores.jobs.get(task_id)
    except JobNotFound:
        outbox.finish(task_id, token, None)
        return None
    if not wants_delivery(job):
        outbox.finish(task_id, token, None)
        return None
    return _deliver(stores, outbox, job, token, http)


def _deliver(stores: Stores, outbox: Outbox, job: Job, token: str,
             http: requests.Session | None) -> Attempt:
    settings = stores.settings
    try:
        body, headers = webhooks.job_event(job, stores.jobs.result(job.task_id) if job.status == "completed"
                                           else None, settings.webhook_secret)
        http = http or webhooks.session(allow_private=settings.webhook_allow_private)
        delivery = webhooks.deliver(http, job.webhook_url, body, headers)
    except redis.RedisError:
        raise  # not this delivery's fault: the claim lapses and it comes due again
    except Exception as exc:  # a delivery that breaks is an attempt, never a stuck entry
        log.exception("webhook for %s: the event could not be built or sent", job.task_id)
        delivery = webhooks.Delivery(False, None, True, f"the event could not be sent ({exc.__class__.__name__})")
    number = job.webhook_attempts + 1
    again = delivery.retryable and number < settings.webhook_max_attempts
    state = "delivered" if delivery.delivered else ("pending" if again else "failed")
    next_at = None
    if again:
        next_at = time.time() + webhooks.retry_delay(number, settings.webhook_schedule_seconds,
                                                     delivery.retry_after,
                                                     settings.webhook_retry_after_max_seconds)
    # The job's fields first, then the entry: a deliverer dying in between leaves an entry that
    # comes due again and finds the state settled, never a pending state with no entry.
    try:
        stores.jobs.set_fields(
            job.task_id,
            webhook_attempts=number,
            webhook_last_status=delivery.status,
            webhook_state=state,
            webhook_last_error="" if delivery.delivered else delivery.detail,
            webhook_next_at=next_at,
        )
    except JobNotFound:
        next_at = None
    if not outbox.finish(job.task_id, token, next_at):
        log.warning("webhook for %s: the claim lapsed during the attempt", job.task_id)
    count_webhook(stores.redis, "retrying" if state == "pending" else state)
    log.info("webhook for %s: attempt %d, %s -> %s%s", job.task_id, number, delivery.detail, state,
             f" (next in {next_at - time.time():.0f} s)" if next_at else "")
    return Attempt(job.task_id, number, state, delivery.status, delivery.detail, next_at)


def sweep(stores: Stores, *, now: float | None = None, limit: int = SWEEP_BATCH,
          http: Callable[[], requests.Session] | None = None) -> list[Attempt]:
    """Attempt every delivery that is due, a few at a time. Each is claimed on its own, so
    sweepers in several processes share the work and never deliver one event twice at once."""
    outbox = Outbox(stores.redis)
    now = time.time() if now is None else now
    due = outbox.due(now, limit)
    if not due:
        return []

    def one(task_id: str) -> Attempt | None:
        try:
            return attempt(stores, task_id, http=http() if http else None, now=now, outbox=outbox)
        except redis.RedisError as exc:
            log.warning("webhook for %s: %s", task_id, exc)
            return None
        except Exception:  # one broken delivery never stops the others in the sweep
            log.exception("webhook for %s: the attempt failed", task_id)
            return None

    with ThreadPoolExecutor(max_workers=min(SWEEP_THREADS, len(due)), thread_name_prefix="webhook") as pool:
        return [a for a in pool.map(one, due) if a is not None]


class JobsAndRedis(Protocol):
    """What a redelivery needs: the worker's ``Stores`` or the API's state."""

    @property
    def jobs(self) -> JobStore: ...

    @property
    def redis(self) -> redis.Redis: ...


def redeliver(stores: JobsAndRedis, task_id: str, *, now: float | None = None) -> Job:
    """The owner's request to deliver a finished job's webhook again: the delivery becomes
    pending with a fresh schedule, due at once (the route then sends a notify message to
    deliver it without waiting for the sweeper). A delivery that is pending already is only
    brought forward; one being attempted right now is left to finish."""
    now = time.time() if now is None else now
    job = stores.jobs.get(task_id)
    if not job.webhook_url:
        raise JobConflict("This job has no webhook_url: there is nothing to deliver.")
    if not job.is_final:
        raise JobConflict(f"The job is {job.status}; its webhook is sent when it finishes.")
    won = Outbox(stores.redis).redeliver(task_id, now, reset=job.webhook_state != "pending")
    if won is None:
        raise JobNotFound(f"No job with id {task_id}.")
    return stores.jobs.get(task_id)
