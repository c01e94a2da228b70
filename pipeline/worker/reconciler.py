"""The reconciler: finds jobs that are stuck and sends them on, or ends them with a reason.

A job can be recorded in Redis and never reach RabbitMQ (the API killed between the two, the
send failing after the record), or lose its next message between two stages. Nothing would
ever look at it again: non-final jobs have no TTL. So every transition keeps the job in an
index of active jobs scored by when it last moved (``pipeline.jobs``), and this looks at the
ones that have not moved for RECONCILE_AFTER_SECONDS:

- one whose stage is running (a lease is held) is left alone: it is moving;
- one whose queue holds messages waiting is left alone: its own message may be among them,
  and a duplicate would be counted as another start of the stage;
- otherwise its current stage's message is sent again, and the job's clock restarts; after
  MAX_RETRIES such re-sends without any progress it is failed, saying so.

Final jobs found in the index (their transition ran before the index existed) leave it, and
one whose webhook is still pending gets its outbox entry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import dramatiq

from pipeline.errors import JobLost, JobNotFound
from pipeline.jobs import DIARIZE_PART, TRANSCRIBE_PART, Job, Moved, State
from pipeline.keys import ACTIVE_KEY, job_key
from pipeline.outbox import Outbox, wants_delivery
from pipeline.queues import (
    ACTOR_QUEUES,
    CHUNK_ACTOR,
    DIARIZE_ACTOR,
    EXTRACT_ACTOR,
    NOTIFY_ACTOR,
    TRANSCRIBE_ACTOR,
)
from pipeline.stores import Stores
from pipeline.uploads import remove_job_files

log = logging.getLogger(__name__)

# actor name, then its arguments
Send = Callable[..., object]
# a queue's name -> how many messages wait in it (ready, and in its delay queue)
Backlog = Callable[[str], int]
BATCH = 500
WAITING_STAGE = "waiting-for-transcriber"  # extract is done; the transcribe message is out


@dataclass(frozen=True)
class Report:
    checked: int = 0
    resent: tuple[tuple[str, str], ...] = ()  # (task id, actor)
    failed: tuple[str, ...] = ()
    running: tuple[str, ...] = ()  # idle, but a lease is held
    waiting: tuple[str, ...] = ()  # idle, but its queue has a backlog
    forgotten: tuple[str, ...] = ()  # final or gone: left the index
    webhooks: tuple[str, ...] = ()  # pending webhooks given their outbox entry


# KEYS: active index, job hash. ARGV: task id, status seen, idle-since cutoff, now, mark
# Counts a re-send only if the job is still where the reconciler saw it and still idle, and
# restarts its clock: two reconcilers (or one racing a worker) never both act on one job.
_MARK = """
if redis.call('HGET', KEYS[2], 'status') ~= ARGV[2] then return -1 end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[3]) then return -1 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
if redis.call('HGET', KEYS[2], 'reconcile_mark') ~= ARGV[5] then
  redis.call('HSET', KEYS[2], 'reconcile_mark', ARGV[5], 'reconcile_resends', 0)
end
return redis.call('HINCRBY', KEYS[2], 'reconcile_resends', 1)
"""


def touch(client: Any, task_id: str, now: float | None = None) -> None:
    """A message for the job is in a worker's hands: its clock restarts (members only: a job
    that ended has left the index and stays out). Between a dead worker's message coming
    back and its lease lapsing, the copy that waits (in a consumer's memory, where no queue
    count sees it) would otherwise look lost, and be sent once more."""
    client.zadd(ACTIVE_KEY, {task_id: time.time() if now is None else now}, xx=True)


def broker_sender(broker: dramatiq.Broker) -> Send:
    """Send a stage's message the way ``pipeline.queues.send`` does, with any arguments."""

    def send(actor_name: str, *args: Any) -> None:
        broker.enqueue(dramatiq.Message(queue_name=ACTOR_QUEUES[actor_name], actor_name=actor_name,
                                        args=args, kwargs={}, options={}))

    return send


def broker_backlog(broker: Any) -> Backlog:
    """Messages waiting in a queue, asked of RabbitMQ (a RabbitmqBroker). A connection the
    server closed while idle is replaced once; an answer that cannot be had counts as a
    backlog, so that nothing is re-sent on a guess."""

    def backlog(queue: str) -> int:
        for _ in range(2):
            try:
                ready, delayed, _dead = broker.get_queue_message_counts(queue)
                return int(ready) + int(delayed)
            except Exception as exc:  # noqa: BLE001 - pika raises many kinds
                log.debug("counting messages in %s: %s", queue, exc)
                for name in ("channel", "connection"):
                    try:
                        delattr(broker, name)
                    except Exception:  # noqa: BLE001 - already gone
                        pass
        return 1

    return backlog


def next_messages(stores: Stores, job: Job) -> list[tuple[str, tuple[Any, ...]]]:
    """The messages that move ``job`` on from where it stands."""
    task_id = job.task_id
    transcribing = job.status == State.TRANSCRIBING or (
        job.status == State.EXTRACTING and job.stage == WAITING_STAGE)
    if not transcribing:
        return [(EXTRACT_ACTOR, (task_id,))]
    if not job.options.diarize:
        return _transcription_messages(stores, job)
    # A diarized job runs two parts side by side: the missing ones go again. Both stored but
    # never merged: diarize's message, which then only merges.
    stored_parts = stores.jobs.parts(task_id)
    messages = [] if TRANSCRIBE_PART in stored_parts else _transcription_messages(stores, job)
    if DIARIZE_PART not in stored_parts or not messages:
        messages.append((DIARIZE_ACTOR, (task_id,)))
    return messages


def _transcription_messages(stores: Stores, job: Job) -> list[tuple[str, tuple[Any, ...]]]:
    task_id = job.task_id
    if not job.chunks:
        return [(TRANSCRIBE_ACTOR, (task_id,))]
    stored = set(stores.jobs.chunks(task_id))
    missing = [i for i in range(len(job.chunks)) if i not in stored]
    # All stored but never merged: a stored chunk's message only checks whether to merge.
    return [(CHUNK_ACTOR, (task_id, i)) for i in (missing or [len(job.chunks) - 1])]


def lease_held(stores: Stores, job: Job) -> bool:
    key = f"{job_key(job.task_id)}:lease"
    keys = [key, f"{key}:diarize", *(f"{key}:chunk{i}" for i in range(len(job.chunks)))]
    return bool(stores.redis.exists(*keys))


def reconcile(stores: Stores, send: Send, *, backlog: Backlog | None = None,
              now: float | None = None, limit: int = BATCH) -> Report:
    """Look at the jobs idle for longer than RECONCILE_AFTER_SECONDS; see the module's text."""
    settings = stores.settings
    now = time.time() if now is None else now
    cutoff = now - settings.reconcile_after_seconds
    client = stores.redis
    stale = cast(list[str], client.zrangebyscore(ACTIVE_KEY, "-inf", cutoff, start=0, num=limit))
    mark = client.register_script(_MARK)
    outbox = Outbox(client)
    out: dict[str, list[Any]] = {k: [] for k in
                                 ("resent", "failed", "running", "waiting", "forgotten", "webhooks")}
    depth: dict[str, int] = {}
    for task_id in stale:
        try:
            job = stores.jobs.get(task_id)
        except JobNotFound:
            client.zrem(ACTIVE_KEY, task_id)
            out["forgotten"].append(task_id)
            continue
        if job.is_final:
            if wants_delivery(job) and job.webhook_state == "pending" and outbox.schedule(
                    task_id, now, only_new=True):
                out["webhooks"].append(task_id)
            client.zrem(ACTIVE_KEY, task_id)
            out["forgotten"].append(task_id)
            continue
        if lease_held(stores, job):
            out["running"].append(task_id)
            continue
        messages = next_messages(stores, job)
        if backlog is not None:
            queues = {ACTOR_QUEUES[actor] for actor, _ in messages}
            for queue in queues - set(depth):
                depth[queue] = backlog(queue)
            if any(depth[queue] > 0 for queue in queues):
                out["waiting"].append(task_id)
                continue
        resends = int(cast(int, mark(keys=[ACTIVE_KEY, job_key(task_id)], args=[
            task_id, job.status.value, repr(cutoff), repr(now),
            f"{job.status.value}/{job.stage}/{job.updated_at!r}"])))
        if resends < 0:
            continue  # it moved meanwhile
        if resends > settings.max_retries:
            _fail(stores, send, job, resends - 1)
            out["failed"].append(task_id)
            continue
        log.warning("job %s has been %s (%s) for %.0f s with nothing running it: sending %s again "
                    "(%d of %d)", task_id, job.status.value, job.stage,
                    now - (job.updated_at or job.created_at), messages[0][0], resends,
                    settings.max_retries)
        for actor, args in messages:
            send(actor, *args)
        out["resent"] += [(task_id, actor) for actor, _ in messages]
    return Report(checked=len(stale), **{k: tuple(v) for k, v in out.items()})


def _fail(stores: Stores, send: Send, job: Job, resends: int) -> None:
    times = "once" if resends == 1 else f"{resends} times"
    error = JobLost(f"lost in the pipeline: re-sent {times} without progress "
                    f"(it stayed {job.status.value}, stage {job.stage})")
    log.error("job %s: %s", job.task_id, error.message)
    moved = stores.jobs.transition(job.task_id, State.FAILED, error=error.to_dict())
    stores.jobs.request_stop(job.task_id)
    remove_job_files(stores.storage, job.task_id)
    if moved is Moved.MOVED and job.webhook_url:
        # The transition put the webhook in the outbox; this only saves the sweeper's delay.
        try:
            send(NOTIFY_ACTOR, job.task_id)
        except Exception as exc:  # noqa: BLE001 - the outbox's sweeper delivers it anyway
            log.warning("job %s: notify message not sent (%s); the sweeper delivers it", job.task_id, exc)


def summary(report: Report) -> str:
    parts: Sequence[tuple[str, tuple[Any, ...]]] = (
        ("re-sent", report.resent), ("failed", report.failed), ("running", report.running),
        ("waiting", report.waiting), ("forgotten", report.forgotten), ("webhooks", report.webhooks))
    return ", ".join(f"{len(v)} {k}" for k, v in parts if v) or "nothing to do"
