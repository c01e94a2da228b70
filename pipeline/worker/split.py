"""When one recording is cut into chunks that several transcribers work on at once.

Two reasons to split: a recording over ``LONG_AUDIO_SECONDS`` always is (in ``CHUNK_SECONDS``
pieces, so that a very long file never ties one worker up for an hour), and, since one engine
thread per process is the layout that moves the most audio (``pipeline.worker.layout``), a shorter
one over ``SPLIT_MIN_SECONDS`` is cut into as many pieces as there are idle transcribers, so
that a lone job still gets every core. Pieces are never shorter than
``SPLIT_MIN_CHUNK_SECONDS``: each cut costs Whisper its context and the piece a model call.

Idle transcribers are read from the workers' heartbeats in Redis (``pipeline.workers``):
each transcribe worker process publishes its threads and the messages it is running now,
and publishes again as soon as that changes. Between the extract stage's decision and a
transcriber taking the message, the heartbeats still show the slot free: a burst of uploads
would each see every transcriber idle and all split (8 x 60 s at once moved a third of the
audio that unsplit jobs did, docs/benchmarks.md). So each decision reserves the slots it counts
on for ``RESERVE_SECONDS`` (``take_idle_transcribers``), and the next decision sees them taken;
a transcriber that takes the message releases its slot (``release_slot``), its heartbeat then
telling the rest. Jobs uploaded with it that have not reached their own decision yet (queued, or
still being decoded) count against the idle slots too: each will want a transcriber within
seconds, and a burst's first job cut in two only spends more CPU on it and moves its words,
while the rest of the burst waits for both halves.

``chunk_seconds`` is the decision, a plain function; the extract stage hands its answer to
``pipeline.worker.chunks.plan_chunks``, which places the cuts in pauses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import redis

from pipeline.jobs import State
from pipeline.keys import ACTIVE_KEY, SPLIT_RESERVED_KEY, job_key
from pipeline.queues import TRANSCRIBE_QUEUE
from pipeline.settings import Settings
from pipeline.workers import live_workers

log = logging.getLogger(__name__)

RESERVE_SECONDS = 3  # longer than a message takes to reach a free transcriber
# Jobs that changed state this recently are looked at as the ones ahead; an older job still
# queued or extracting is stuck (the reconciler's) or waits behind busy transcribers anyway.
AHEAD_SECONDS = 600
AHEAD_LOOKED_AT = 64

# KEYS: reserved. ARGV: seconds a reservation lasts, idle slots seen, slots wanted, task id.
# Answers the slots reserved: at most the idle ones not reserved already, at most the wanted.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
for n = 1, 64 do redis.call('ZREM', KEYS[1], ARGV[4] .. ':' .. n) end
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local taken = math.min(math.max(free, 0), tonumber(ARGV[3]))
for n = 1, taken do redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. n) end
redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 1)
return taken
"""


def idle_transcribers(workers: Iterable[Mapping[str, Any]]) -> int:
    """Free slots among live transcribe workers: threads minus the messages each is running.

    A record without the ``busy`` figure (a worker of an older version) counts as fully busy:
    splitting for capacity that may not be there would only queue the pieces."""
    idle = 0
    for record in workers:
        if TRANSCRIBE_QUEUE not in (record.get("queues") or []):
            continue
        busy = record.get("busy")
        if not isinstance(busy, int):
            continue
        threads = record.get("threads")
        idle += max(0, (threads if isinstance(threads, int) and threads > 0 else 1) - busy)
    return idle


def read_idle_transcribers(client: redis.Redis) -> int:
    """Idle transcribe slots now; 0 when the heartbeats cannot be read (then nothing is split
    for capacity, which is always safe)."""
    try:
        return idle_transcribers(live_workers(client))
    except (redis.RedisError, ValueError) as exc:
        log.warning("idle transcribers unknown (%s); not splitting for capacity", exc)
        return 0


def take_idle_transcribers(client: redis.Redis, task_id: str, duration: float, settings: Settings) -> int:
    """Idle transcribe slots for this job's decision, reserved for it: as many as it could be
    cut into (one when it is too short to split, which it will occupy all the same), less those
    other jobs reserved in the last ``RESERVE_SECONDS`` and less the jobs ahead of it that have
    reserved none (``jobs_ahead``). A redelivered job replaces its own reservation. 0 when Redis
    cannot be asked (then nothing is split for capacity)."""
    wanted = 1
    if settings.split_min_seconds > 0 and duration > settings.split_min_seconds:
        wanted = max(1, min(64, int(duration // settings.split_min_chunk_seconds)))
    idle = read_idle_transcribers(client)
    if idle <= 0:
        return 0
    try:
        if wanted > 1:  # a job that is not cut takes its one slot whatever else is coming
            idle -= jobs_ahead(client, task_id)
        return int(client.eval(_TAKE, 1, SPLIT_RESERVED_KEY, RESERVE_SECONDS, max(idle, 0), wanted, task_id))  # type: ignore[arg-type]
    except redis.RedisError as exc:
        log.warning("could not reserve idle transcribers (%s); not splitting for capacity", exc)
        return 0


def jobs_ahead(client: redis.Redis, task_id: str, now: float | None = None) -> int:
    """Other jobs that will want a transcriber soon and have reserved none: those queued or
    being extracted, among the most recently moved. A job waiting for a transcriber after its
    decision counts too (its state is still extracting), unless its reservation is counted
    already."""
    now = time.time() if now is None else now
    recent = cast(list[str], client.zrevrangebyscore(ACTIVE_KEY, "+inf", now - AHEAD_SECONDS, start=0,
                                                      num=AHEAD_LOOKED_AT))
    others = [other for other in recent if other != task_id]
    if not others:
        return 0
    pipe = client.pipeline(transaction=False)
    for other in others:
        pipe.hget(job_key(other), "status")
    pipe.zrange(SPLIT_RESERVED_KEY, 0, -1)
    *statuses, reserved = pipe.execute()
    holding = {member.rsplit(":", 1)[0] for member in reserved}
    waiting = (State.QUEUED.value, State.EXTRACTING.value)
    return sum(1 for other, status in zip(others, statuses, strict=True)
               if status in waiting and other not in holding)


def release_slot(client: redis.Redis, task_id: str, piece: int = 1) -> None:
    """A transcriber took piece ``piece`` (from 1; a whole job is piece 1) of ``task_id``: its
    heartbeat says it is busy from now on, so the reservation would count the same slot twice.
    Kept for its full ``RESERVE_SECONDS``, a finished short job left the next upload (a minute
    sent right after it) seeing one transcriber too few, and not split."""
    try:
        client.zrem(SPLIT_RESERVED_KEY, f"{task_id}:{piece}")
    except redis.RedisError as exc:  # it expires on its own within seconds
        log.debug("reservation of %s:%d not released: %s", task_id, piece, exc)


def chunk_seconds(duration: float, idle: int, settings: Settings) -> float | None:
    """The target chunk length for a recording of ``duration`` seconds with ``idle`` transcribers
    free, or None to transcribe it in one piece.

    ``idle`` counts every free transcriber, the one that would take the whole recording too:
    two idle means two pieces.
    """
    pieces_for_capacity = 0
    if settings.split_min_seconds > 0 and duration > settings.split_min_seconds and idle >= 2:
        pieces_for_capacity = min(idle, int(duration // settings.split_min_chunk_seconds))
    long_audio = settings.long_audio_seconds
    if long_audio and duration > long_audio:
        # A long recording is split anyway; idle capacity only makes its pieces smaller.
        if pieces_for_capacity * settings.chunk_seconds > duration:
            return max(duration / pieces_for_capacity, float(settings.split_min_chunk_seconds))
        return float(settings.chunk_seconds)
    if pieces_for_capacity >= 2:
        return duration / pieces_for_capacity
    return None
