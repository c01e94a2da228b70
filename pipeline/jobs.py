"""Job records in Redis: creation, atomic state transitions, progress and results.

States only move forward (``queued -> extracting -> transcribing -> completed | failed |
cancelled``); every transition is one Lua script, so that two workers holding the same
redelivered message, or a cancellation racing a completion, can never move a job backwards
or out of a final state.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, cast

import redis

from pipeline.errors import JobNotFound
from pipeline.keys import (
    ACTIVE_KEY,
    METRICS_KEY,
    QUEUED_KEY,
    STAGE_SECONDS_KEY,
    WEBHOOKS_DUE_KEY,
    events_channel,
    job_cancel_key,
    job_chunks_key,
    job_history_key,
    job_key,
    job_parts_key,
    job_redacted_audio_key,
    job_result_key,
    job_segments_key,
    jobs_index_key,
)
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript


class State(StrEnum):
    """A job's states, in the order a job moves through them. The transition script's ranks are
    generated from this order and ``FINAL_STATES``: a new state is one line here (and one in
    ``FINAL_STATES`` if nothing leaves it)."""

    QUEUED = "queued"
    EXTRACTING = "extracting"
    TRANSCRIBING = "transcribing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


# Nothing leaves these. They share the last rank: none is further along than another.
FINAL_STATES = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})
_MOVING = [state for state in State if state not in FINAL_STATES]
FINAL_RANK = len(_MOVING)
# How far along each state is; a job only ever moves to a higher rank.
RANK = {state: _MOVING.index(state) if state in _MOVING else FINAL_RANK for state in State}


# A diarized job's parts, run side by side once the audio is extracted; each stores its result
# (``JobStore.save_part``) and the last to finish merges them.
TRANSCRIBE_PART = "transcribe"
DIARIZE_PART = "diarize"
PARTS = (TRANSCRIBE_PART, DIARIZE_PART)


class Moved(Enum):
    MOVED = 1
    ALREADY = 2  # the job is in that state already (a redelivered message)
    REFUSED = 0  # the job is final, or further along


def new_task_id() -> str:
    return uuid.uuid4().hex


# Listing indexes drop members older than a result's TTL plus this: a job ends well within it.
INDEX_GRACE_SECONDS = 24 * 3600
STATE_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

# KEYS: job hash, queued zset, history list, result key, segments list, metrics, state seconds,
#       active index, webhooks due
# ARGV: new state, now, ttl for final jobs, event json, result json ('' for none), task id,
#       then field/value pairs
_TRANSITION = """
local job, queued, history, result = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local metrics, state_seconds, active, webhooks_due = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local new, now, final_ttl, event, result_json, task_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local rank = {RANKS}
local final = FINAL_RANK
local current = redis.call('HGET', job, 'status')
if not current then return -1 end
if current == new then return 2 end
if rank[current] == final or rank[new] <= rank[current] then return 0 end
-- Metrics, counted here so that every process's transitions add up in one place: jobs that
-- reached each state, jobs in each state now, and a histogram of the time spent in the state
-- being left.
local entered = tonumber(redis.call('HGET', job, 'updated_at') or now)
local spent = math.max(0, tonumber(now) - entered)
redis.call('HINCRBY', metrics, 'reached:' .. new, 1)
redis.call('HINCRBY', metrics, 'current:' .. current, -1)
if rank[new] < final then redis.call('HINCRBY', metrics, 'current:' .. new, 1) end
local buckets = {BUCKETS}
for _, bound in ipairs(buckets) do
  if spent <= bound then redis.call('HINCRBY', state_seconds, current .. ':le:' .. bound, 1) end
end
redis.call('HINCRBY', state_seconds, current .. ':count', 1)
redis.call('HINCRBYFLOAT', state_seconds, current .. ':sum', spent)
redis.call('HSET', job, 'status', new, 'updated_at', now)
for i = 7, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
if current == 'queued' then
  redis.call('ZREM', queued, task_id)
  if rank[new] < final then redis.call('HSETNX', job, 'started_at', now) end
end
redis.call('RPUSH', history, cjson.encode({status=new, at=tonumber(now)}))
if rank[new] == final then
  redis.call('HSET', job, 'finished_at', now)
  if result_json ~= '' then redis.call('SET', result, result_json) end
  local ttl = tonumber(final_ttl)
  for i = 1, 5 do  -- the job's own keys (KEYS[5] is its segments), not the queued index
    if i ~= 2 and redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
if rank[new] == final then
  redis.call('ZREM', active, task_id)
  -- The webhook goes in the outbox with the state that triggers it: no message to lose.
  if redis.call('HGET', job, 'webhook_state') == 'pending' then
    redis.call('ZADD', webhooks_due, 'NX', now, task_id)
  end
else
  redis.call('ZADD', active, now, task_id)
end
redis.call('PUBLISH', job .. ':events', event)
return 1
"""
_TRANSITION = (
    _TRANSITION.replace("RANKS", ", ".join(f"['{state}']={rank}" for state, rank in RANK.items()))
    .replace("FINAL_RANK", str(FINAL_RANK))
    .replace("BUCKETS", ", ".join(f"{b:g}" for b in STATE_SECONDS_BUCKETS))
)

# KEYS: job hash, segments list. ARGV: progress, segment json, event json less its closing
# brace (the progress is appended here), part ('' for the whole job), then every part's name.
# A diarized job runs two parts side by side, each with its own progress_<part>; the job's
# progress is their mean, so it covers both.
_PROGRESS = """
local job, segments = KEYS[1], KEYS[2]
local segment, event_head, part = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', job, 'status') ~= 'transcribing' then return 0 end
local progress, text = tonumber(ARGV[1]), ARGV[1]
if part ~= '' then
  local own = 'progress_' .. part
  if progress > tonumber(redis.call('HGET', job, own) or '0') then
    redis.call('HSET', job, own, ARGV[1])
  end
  local sum = 0
  for i = 5, #ARGV do sum = sum + tonumber(redis.call('HGET', job, 'progress_' .. ARGV[i]) or '0') end
  progress = sum / math.max(1, #ARGV - 4)
  text = string.format('%.17g', progress)
end
-- Progress only grows: chunks of one recording report from several workers, out of order.
local shown = redis.call('HGET', job, 'progress') or '0'
if progress > tonumber(shown) then
  redis.call('HSET', job, 'progress', text)
  shown = text
end
if segment ~= '' then redis.call('RPUSH', segments, segment) end
redis.call('PUBLISH', job .. ':events', event_head .. shown .. '}')
return 1
"""

# KEYS: halves hash, job hash. ARGV: part, its result json, ttl, task id, now, then every part's
# name. Stores a part's result (the first delivery's wins) and names what still runs in the job's
# stage; returns how many parts are still missing, or -1 for a job that does not exist.
_SAVE_PART = """
local parts, job = KEYS[1], KEYS[2]
local part, part_json, ttl, task_id, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', job) == 0 then return -1 end
redis.call('HSETNX', parts, part, part_json)
redis.call('EXPIRE', parts, ttl)
local left = {}
for i = 6, #ARGV do
  if redis.call('HEXISTS', parts, ARGV[i]) == 0 then table.insert(left, ARGV[i]) end
end
local status = redis.call('HGET', job, 'status')
if #left > 0 and status == 'transcribing' then
  local stage = table.concat(left, '+')
  if redis.call('HGET', job, 'stage') ~= stage then
    redis.call('HSET', job, 'stage', stage)
    redis.call('PUBLISH', job .. ':events', cjson.encode(
      {type='status', task_id=task_id, status=status, stage=stage, at=tonumber(now)}))
  end
end
return #left
"""


@dataclass
class Job:
    task_id: str
    status: State
    stage: str
    progress: float
    created_at: float
    options: TranscribeOptions
    sha256: str = ""
    filename: str = ""
    upload_path: str = ""
    audio_path: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    duration: float | None = None
    language: str | None = None
    language_probability: float | None = None
    device: str | None = None
    device_reason: str | None = None
    cached: bool = False
    error: dict[str, str] | None = None
    webhook_url: str = ""
    webhook_state: str = ""
    webhook_attempts: int = 0
    webhook_last_status: int | None = None
    result_url: str = ""
    owner: str = ""
    cache_scope: str = ""  # whose transcripts this job may reuse: "" for everyone's (pipeline.cache.scoped)
    chunks: list[tuple[int, int]] = field(default_factory=list)  # sample ranges of a long recording
    # multichannel: the channel (from 1) of each chunk; empty for a mono plan.
    chunk_channels: list[int] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the result lacks, in words

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def cache_input(self) -> str:
        """What the transcript cache knows this job's input by: its bytes' digest, within its scope."""
        from pipeline.cache import scoped

        return scoped(self.sha256, self.cache_scope)

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> Job:
        def num(name: str) -> float | None:
            return float(data[name]) if data.get(name) not in (None, "") else None

        return cls(
            task_id=data["task_id"],
            status=State(data["status"]),
            stage=data.get("stage", ""),
            progress=float(data.get("progress") or 0.0),
            created_at=float(data["created_at"]),
            options=TranscribeOptions.from_json(data["options"]),
            sha256=data.get("sha256", ""),
            filename=data.get("filename", ""),
            upload_path=data.get("upload_path", ""),
            audio_path=data.get("audio_path", ""),
            started_at=num("started_at"),
            finished_at=num("finished_at"),
            updated_at=num("updated_at"),
            duration=num("duration"),
            language=data.get("language") or None,
            language_probability=num("language_probability"),
            device=data.get("device") or None,
            device_reason=data.get("device_reason") or None,
            cached=data.get("cached") == "1",
            error=json.loads(data["error"]) if data.get("error") else None,
            webhook_url=data.get("webhook_url", ""),
            webhook_state=data.get("webhook_state", ""),
            webhook_attempts=int(data.get("webhook_attempts") or 0),
            webhook_last_status=int(data["webhook_last_status"])
            if data.get("webhook_last_status")
            else None,
            result_url=data.get("result_url", ""),
            owner=data.get("owner", ""),
            cache_scope=data.get("cache_scope", ""),
            chunks=[(int(a), int(b)) for a, b in json.loads(data["chunks"])] if data.get("chunks") else [],
            chunk_channels=[int(c) for c in json.loads(data["chunk_channels"])] if data.get("chunk_channels") else [],
            extra={k: v for k, v in data.items() if k.startswith("webhook_auth_")},
            warnings=json.loads(data["warnings"]) if data.get("warnings") else [],
        )


def _flatten(fields: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, value in fields.items():
        if value is None:
            value = ""
        elif isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, dict):
            value = json.dumps(value)
        out += [name, str(value)]
    return out


def _owner_index(owner: str) -> str:
    # With API keys each key has its own index; without, every job is in the one list.
    return jobs_index_key(owner)


def _mapping(fields: dict[str, Any]) -> dict[Any, Any]:
    flat = _flatten(fields)
    return dict(zip(flat[::2], flat[1::2], strict=True))


class JobStore:
    def __init__(self, client: redis.Redis, *, result_ttl: int, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.result_ttl = result_ttl
        self.clock = clock  # the wall clock of the timestamps a job carries
        self._transition = client.register_script(_TRANSITION)
        self._progress = client.register_script(_PROGRESS)
        self._save_part = client.register_script(_SAVE_PART)
        # HINCRBY alone would create a hash (with no TTL) for a job that expired.
        self._count = client.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 0 then return nil end "
            "return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)")

    # -- writing ---------------------------------------------------------------------------
    def create(self, task_id: str, options: TranscribeOptions, **fields: Any) -> Job:
        now = self.clock()
        record = {
            "task_id": task_id,
            "status": State.QUEUED.value,
            "stage": "queued",
            "progress": 0.0,
            "created_at": now,
            "updated_at": now,
            "options": options.to_json(),
            "engine": options.engine,
            "model": options.model,
            **fields,
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(job_key(task_id), mapping=_mapping(record))
        # Pruned by time here, and expiring when idle, so that no index grows for ever.
        horizon = now - self.result_ttl - INDEX_GRACE_SECONDS
        for index in (QUEUED_KEY, _owner_index(fields.get("owner", ""))):
            pipe.zadd(index, {task_id: now})
            pipe.zremrangebyscore(index, "-inf", horizon)
            pipe.expire(index, self.result_ttl + INDEX_GRACE_SECONDS)
        pipe.zadd(ACTIVE_KEY, {task_id: now})
        pipe.rpush(job_history_key(task_id), json.dumps({"status": "queued", "at": now}))
        pipe.hincrby(METRICS_KEY, "reached:queued", 1)
        pipe.hincrby(METRICS_KEY, "current:queued", 1)
        pipe.execute()
        return self.get(task_id)

    def transition(
        self, task_id: str, state: State, *, result: Transcript | None = None, **fields: Any
    ) -> Moved:
        """Move the job to ``state`` if that is forward; set ``fields`` only when it moves."""
        now = self.clock()
        if state.is_final:
            fields.setdefault("stage", "done")
            if state is State.COMPLETED:
                fields.setdefault("progress", 1.0)
        else:
            fields.setdefault("stage", state.value)
        event = json.dumps({"type": "status", "task_id": task_id, "status": state.value, "at": now,
                            "stage": fields["stage"],
                            **{k: fields[k] for k in ("progress", "error", "device") if k in fields}})
        key = job_key(task_id)
        rc = self._transition(
            keys=[key, QUEUED_KEY, job_history_key(task_id), job_result_key(task_id), job_segments_key(task_id),
                  METRICS_KEY, STAGE_SECONDS_KEY, ACTIVE_KEY, WEBHOOKS_DUE_KEY],
            args=[
                state.value,
                repr(now),
                self.result_ttl,
                event,
                json.dumps(result.to_dict()) if result is not None else "",
                task_id,
                *_flatten(fields),
            ],
        )
        if rc == -1:
            raise JobNotFound(f"No job with id {task_id}.")
        return Moved(rc)

    def complete(self, task_id: str, transcript: Transcript, *, cached: bool, **fields: Any) -> Moved:
        """End the job with its transcript, the one way a job is completed with a result."""
        return self.transition(
            task_id,
            State.COMPLETED,
            result=transcript,
            **fields,
            cached=cached,
            language=transcript.language,
            language_probability=transcript.language_probability,
            duration=transcript.duration,
            # An answer from the cache ran on no device of this job's.
            device=None if cached else transcript.device,
        )

    def set_fields(self, task_id: str, **fields: Any) -> None:
        """Set descriptive fields (not the state) on a job that still exists."""
        key = job_key(task_id)
        status = cast(str | None, self.redis.hget(key, "status"))
        if status is None:
            raise JobNotFound(f"No job with id {task_id}.")
        if "stage" in fields and status in FINAL_STATES:
            fields = {k: v for k, v in fields.items() if k != "stage"}  # a final job's stage is done
        if not fields:
            return
        self.redis.hset(key, mapping=_mapping(fields))
        if "stage" in fields:
            # A new stage within the same state (cache-lookup, waiting-for-transcriber) is news
            # to whoever follows the job's events too.
            self.redis.publish(events_channel(task_id), json.dumps(
                {"type": "status", "task_id": task_id, "status": status, "stage": fields["stage"],
                 "at": self.clock()}))

    def add_segment(self, task_id: str, segment: Segment, progress: float, *, part: str = "",
                    parts: tuple[str, ...] = ()) -> bool:
        """Record a decoded segment and the progress so far (of ``part`` when the job runs
        ``parts`` side by side: the job's progress is then their mean)."""
        seg = segment.to_dict()
        return self._report(task_id, progress, {"type": "segment", "task_id": task_id, "segment": seg},
                            json.dumps(seg), part, parts)

    def set_progress(self, task_id: str, progress: float, *, part: str = "",
                     parts: tuple[str, ...] = ()) -> bool:
        """Progress without a segment (a stage that decodes none, such as diarization)."""
        return self._report(task_id, progress, {"type": "progress", "task_id": task_id}, "", part, parts)

    def _report(self, task_id: str, progress: float, event: dict[str, Any], segment: str, part: str,
                parts: tuple[str, ...]) -> bool:
        # The script appends the job's progress: with parts, only it knows the mean.
        head = json.dumps({**event, "progress": 0})
        head = head[: head.rindex('"progress"')] + '"progress": '
        key = job_key(task_id)
        return bool(self._progress(keys=[key, job_segments_key(task_id)],
                                   args=[repr(progress), segment, head, part, *parts]))

    def reset_segments(self, task_id: str) -> None:
        # A redelivered transcription starts over; half a list from the dead attempt would repeat.
        self.redis.delete(job_segments_key(task_id))

    def cancel(self, task_id: str) -> Moved:
        """Flag the job for its worker and end it as ``cancelled`` (refused for a final job)."""
        if not self.redis.exists(job_key(task_id)):
            raise JobNotFound(f"No job with id {task_id}.")
        flag = job_cancel_key(task_id)
        self.redis.set(flag, "1", ex=self.result_ttl)
        moved = self.transition(task_id, State.CANCELLED, error={
            "code": "cancelled", "message": "The job was cancelled at the client's request."})
        if moved is Moved.REFUSED:
            self.redis.delete(flag)
        return moved

    def add_decoded(self, task_id: str, seconds: float) -> float:
        """Add to the seconds of audio decoded so far; return the new total."""
        return float(cast(float, self.redis.hincrbyfloat(job_key(task_id), "decoded_seconds", seconds)))

    def request_stop(self, task_id: str) -> None:
        """Raise the flag that running workers check between segments."""
        self.redis.set(job_cancel_key(task_id), "1", ex=self.result_ttl)

    def cancel_requested(self, task_id: str) -> bool:
        return bool(self.redis.exists(job_cancel_key(task_id)))

    def count_attempt(self, task_id: str, stage: str) -> int:
        """Count a start of ``stage``; RabbitMQ redelivers a dead worker's message unseen by
        Dramatiq's retry count, so this is how a job that kills its worker is noticed."""
        count = self._count(keys=[job_key(task_id)], args=[f"attempts_{stage}"])
        if count is None:
            raise JobNotFound(f"No job with id {task_id}.")
        return int(count)

    # -- chunks of a long recording ---------------------------------------------------------
    def save_chunk(self, task_id: str, index: int, transcript: Transcript) -> int:
        """Store one chunk's transcript (the first delivery's wins); return how many are stored."""
        key = job_chunks_key(task_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(key, str(index), json.dumps(transcript.to_dict()))
        pipe.expire(key, self.result_ttl)
        pipe.hlen(key)
        _, _, stored = pipe.execute()
        return int(stored)

    def chunk(self, task_id: str, index: int) -> Transcript | None:
        raw = cast(str | None, self.redis.hget(job_chunks_key(task_id), str(index)))
        return None if raw is None else Transcript.from_dict(json.loads(raw))

    def chunks(self, task_id: str) -> dict[int, Transcript]:
        raw = cast(dict[str, str], self.redis.hgetall(job_chunks_key(task_id)))
        return {int(k): Transcript.from_dict(json.loads(v)) for k, v in raw.items()}

    # -- the redacted audio (redact_pii_audio) ----------------------------------------------
    def save_redacted_audio(self, task_id: str, wav: bytes) -> None:
        """Kept beside the result, as long as it (base64: the stores' Redis answers text)."""
        self.redis.set(job_redacted_audio_key(task_id), base64.b64encode(wav).decode("ascii"),
                       ex=self.result_ttl)

    def redacted_audio(self, task_id: str) -> bytes | None:
        raw = cast(str | None, self.redis.get(job_redacted_audio_key(task_id)))
        return None if raw is None else base64.b64decode(raw)

    # -- parts of a job that run side by side (transcript and speakers) -----------------------
    def save_part(self, task_id: str, part: str, result: dict[str, Any], parts: tuple[str, ...]) -> int:
        """Store one part's result (the first delivery's wins) and name the parts still running
        in the job's stage; return how many of ``parts`` are still missing (0: merge now)."""
        key = job_key(task_id)
        left = int(cast(int, self._save_part(
            keys=[job_parts_key(task_id), key],
            args=[part, json.dumps(result), self.result_ttl, task_id, repr(self.clock()), *parts])))
        if left < 0:
            raise JobNotFound(f"No job with id {task_id}.")
        return left

    def parts(self, task_id: str) -> dict[str, dict[str, Any]]:
        raw = cast(dict[str, str], self.redis.hgetall(job_parts_key(task_id)))
        return {name: json.loads(value) for name, value in raw.items()}

    # -- reading ---------------------------------------------------------------------------
    def get(self, task_id: str) -> Job:
        data = cast(dict[str, str], self.redis.hgetall(job_key(task_id)))
        if not data or "status" not in data:
            raise JobNotFound(f"No job with id {task_id}.")
        return Job.from_hash(data)

    def history(self, task_id: str) -> list[dict[str, Any]]:
        raw = cast(list[str], self.redis.lrange(job_history_key(task_id), 0, -1))
        return [json.loads(x) for x in raw]

    def segments(self, task_id: str) -> list[Segment]:
        raw = cast(list[str], self.redis.lrange(job_segments_key(task_id), 0, -1))
        return [Segment.from_dict(json.loads(x)) for x in raw]

    def result(self, task_id: str) -> Transcript | None:
        raw = cast(str | None, self.redis.get(job_result_key(task_id)))
        return Transcript.from_dict(json.loads(raw)) if raw else None

    def queue_position(self, task_id: str) -> int | None:
        rank = cast(int | None, self.redis.zrank(QUEUED_KEY, task_id))
        return None if rank is None else rank + 1

    def wait_final(self, task_id: str, timeout: float) -> Job:
        """Block until the job is final or ``timeout`` passes; return the job as it is then."""
        deadline = time.monotonic() + timeout
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(events_channel(task_id))
        try:
            # Subscribed before the first read, so a transition in between is not missed.
            job = self.get(task_id)
            while not job.is_final:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # Any event, or a quiet second, is a reason to read the record again.
                pubsub.get_message(timeout=min(left, 1.0))
                job = self.get(task_id)
            return job
        finally:
            pubsub.close()

    def list(
        self, *, owner: str = "", status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        """Jobs newest first, ``limit`` at a time; the cursor names where the next page starts.

        The cursor is the creation time of the last job returned: pages stay stable while new
        jobs arrive at the front."""
        index = _owner_index(owner)
        before = f"({cursor}" if cursor else "+inf"
        found: list[Job] = []
        last_score: float | None = None
        exhausted = False
        while len(found) < limit and not exhausted:
            batch = cast(list[tuple[str, float]], self.redis.zrevrangebyscore(
                index, before, "-inf", start=0, num=max(limit * 2, 50), withscores=True))
            exhausted = not batch
            for task_id, score in batch:
                before, last_score = f"({score!r}", score
                try:
                    job = self.get(task_id)
                except JobNotFound:
                    self.redis.zrem(index, task_id)  # its record expired
                    continue
                if status is None or job.status == status:
                    found.append(job)
                    if len(found) == limit:
                        break
        more = len(found) == limit and bool(
            self.redis.zrevrangebyscore(index, f"({last_score!r}", "-inf", start=0, num=1))
        return found, (repr(last_score) if more and last_score is not None else None)
