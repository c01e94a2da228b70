"""Per-client limits, counted in Redis so that every API process and host shares one count.

A client is an API key, or the caller's address when no keys are set (``api.auth``). Each
refusal is a 429 whose message names the setting and whose Retry-After says when to try again:

- MAX_OPEN_STREAMS_PER_CLIENT: event streams open at once. Each open stream holds a slot that
  it renews while it runs; a slot whose process died lapses within ``STREAM_SLOT_SECONDS``.
- MAX_LIVE_SESSIONS_PER_CLIENT: realtime sessions open at once, held like stream slots.
- MAX_ACTIVE_JOBS_PER_CLIENT: jobs queued or running. Reserved before the upload is read, so a
  refused client's file never reaches the disk; finished jobs leave the count as it is read.
- MAX_AUDIO_SECONDS_PER_DAY: recorded seconds (as probed at upload) per UTC day; cache hits
  are free, and a job that was not accepted gives its seconds back.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import redis

from pipeline.errors import AudioQuotaExceeded, TooManyActiveJobs, TooManyLiveSessions, TooManyStreams
from pipeline.jobs import FINAL_STATES
from pipeline.keys import client_key, job_key
from pipeline.settings import Settings

STREAM_SLOT_SECONDS = 60  # a stream renews its slot well within this
STREAM_RENEW_SECONDS = 20

T = TypeVar("T")
# A reservation with no job record yet is an upload in progress; past this, an abandoned one.
UPLOAD_GRACE_SECONDS = 3600
ACTIVE_KEY_TTL = 7 * 24 * 3600
# Seconds a refused client is told to wait where nothing says exactly when room will be made.
RETRY_STREAMS = 10
RETRY_JOBS = 15

# KEYS: the client's stream slots. ARGV: now, limit, slot id, slot expiry, key ttl.
_OPEN_STREAM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return -1 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return n + 1
"""

# KEYS: the client's active jobs. ARGV: now, limit, task id, job key prefix, grace, key ttl.
_RESERVE_JOB = """
local final = {FINAL}
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local status = redis.call('HGET', ARGV[4] .. members[i], 'status')
  if (status and final[status]) or
     (not status and tonumber(members[i + 1]) < tonumber(ARGV[1]) - tonumber(ARGV[5])) then
    redis.call('ZREM', KEYS[1], members[i])
  end
end
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return -1 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return n + 1
""".replace("{FINAL}", "{" + ", ".join(f"['{s}'] = true" for s in sorted(FINAL_STATES)) + "}")

# KEYS: the client's seconds today. ARGV: seconds, limit, key ttl. {accepted, used before}.
_CHARGE_AUDIO = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {0, tostring(used)} end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, tostring(used)}
"""


def _seconds_to_midnight_utc(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((tomorrow - now).total_seconds()))


class ClientLimits:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._open_stream = client.register_script(_OPEN_STREAM)
        self._reserve_job = client.register_script(_RESERVE_JOB)
        self._charge_audio = client.register_script(_CHARGE_AUDIO)

    # -- event streams -----------------------------------------------------------------------
    def open_stream(self, client: str) -> str | None:
        """A slot for one more stream (its id, None when the limit is off), or TooManyStreams."""
        limit = self.settings.max_open_streams_per_client
        if limit <= 0:
            return None
        slot = uuid.uuid4().hex
        now = time.time()
        taken = int(self._open_stream(
            keys=[client_key(client, "streams")],
            args=[now, limit, slot, now + STREAM_SLOT_SECONDS, STREAM_SLOT_SECONDS * 2]))
        if taken < 0:
            raise TooManyStreams(
                f"This client already has {limit} event streams open (MAX_OPEN_STREAMS_PER_CLIENT); "
                f"close one, or follow the job by polling its status URL.",
                limit="MAX_OPEN_STREAMS_PER_CLIENT", retry_after=RETRY_STREAMS)
        return slot

    def renew_stream(self, client: str, slot: str) -> None:
        key = client_key(client, "streams")
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {slot: time.time() + STREAM_SLOT_SECONDS}, xx=True)
        pipe.expire(key, STREAM_SLOT_SECONDS * 2)
        pipe.execute()

    def kept_open(self, client: str, slot: str | None, events: Iterable[T]) -> Iterator[T]:
        """``events`` handed on as they come, the client's stream slot renewed meanwhile, so
        that a long stream keeps counting against MAX_OPEN_STREAMS_PER_CLIENT."""
        renewed = time.monotonic()
        for event in events:
            if slot is not None and time.monotonic() - renewed > STREAM_RENEW_SECONDS:
                self.renew_stream(client, slot)
                renewed = time.monotonic()
            yield event

    def close_stream(self, client: str, slot: str) -> None:
        self.redis.zrem(client_key(client, "streams"), slot)

    def open_streams(self, client: str) -> int:
        key = client_key(client, "streams")
        return int(self.redis.zcount(key, time.time(), "+inf"))  # type: ignore[arg-type]

    # -- live sessions ------------------------------------------------------------------------
    def open_live(self, client: str) -> str | None:
        """A slot for one more live session (its id; None when the limit is off), or
        TooManyLiveSessions. Renewed with ``renew_live`` while the session runs."""
        limit = self.settings.max_live_sessions_per_client
        if limit <= 0:
            return None
        slot = uuid.uuid4().hex
        now = time.time()
        taken = int(self._open_stream(
            keys=[client_key(client, "live")],
            args=[now, limit, slot, now + STREAM_SLOT_SECONDS, STREAM_SLOT_SECONDS * 2]))
        if taken < 0:
            raise TooManyLiveSessions(
                f"This client already has {limit} live sessions open (MAX_LIVE_SESSIONS_PER_CLIENT); "
                "close one first.", limit="MAX_LIVE_SESSIONS_PER_CLIENT", retry_after=RETRY_STREAMS)
        return slot

    def renew_live(self, client: str, slot: str) -> None:
        key = client_key(client, "live")
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {slot: time.time() + STREAM_SLOT_SECONDS}, xx=True)
        pipe.expire(key, STREAM_SLOT_SECONDS * 2)
        pipe.execute()

    def close_live(self, client: str, slot: str) -> None:
        self.redis.zrem(client_key(client, "live"), slot)

    # -- active jobs -------------------------------------------------------------------------
    def reserve_job(self, client: str, task_id: str) -> bool:
        """Count ``task_id`` as one of the client's active jobs (True), or TooManyActiveJobs.
        False when the limit is off and nothing was reserved."""
        limit = self.settings.max_active_jobs_per_client
        if limit <= 0:
            return False
        taken = int(self._reserve_job(
            keys=[client_key(client, "active")],
            args=[time.time(), limit, task_id, job_key(""), UPLOAD_GRACE_SECONDS, ACTIVE_KEY_TTL]))
        if taken < 0:
            raise TooManyActiveJobs(
                f"This client already has {limit} jobs queued or running (MAX_ACTIVE_JOBS_PER_CLIENT); "
                f"submit more when one has finished.",
                limit="MAX_ACTIVE_JOBS_PER_CLIENT", retry_after=RETRY_JOBS)
        return True

    def release_job(self, client: str, task_id: str) -> None:
        self.redis.zrem(client_key(client, "active"), task_id)

    # -- audio seconds per day ---------------------------------------------------------------
    def _audio_key(self, client: str, now: datetime) -> str:
        return client_key(client, f"audio:{now:%Y-%m-%d}")

    def audio_used_today(self, client: str) -> float:
        return float(self.redis.get(self._audio_key(client, datetime.now(UTC))) or 0)  # type: ignore[arg-type]

    def check_audio_left(self, client: str) -> None:
        """Refuse before the upload is read when today's allowance is already spent."""
        limit = self.settings.max_audio_seconds_per_day
        if limit > 0 and self.audio_used_today(client) >= limit:
            self._refuse_audio(limit, left=0.0, seconds=None)

    def charge_audio(self, client: str, seconds: float) -> tuple[str, float] | None:
        """Count ``seconds`` against today's allowance, or AudioQuotaExceeded when they do not
        fit in what is left. The charge (for ``refund_audio``), None when nothing was counted."""
        limit = self.settings.max_audio_seconds_per_day
        if limit <= 0 or seconds <= 0:
            return None
        key = self._audio_key(client, datetime.now(UTC))
        accepted, used = self._charge_audio(keys=[key], args=[seconds, limit, 2 * 24 * 3600])
        if not int(accepted):
            self._refuse_audio(limit, left=max(0.0, limit - float(used)), seconds=seconds)
        return key, seconds

    def refund_audio(self, charge: tuple[str, float]) -> None:
        key, seconds = charge
        self.redis.incrbyfloat(key, -seconds)

    def _refuse_audio(self, limit: int, *, left: float, seconds: float | None) -> None:
        this = f"This recording is {seconds:.0f} s long and this" if seconds is not None else "This"
        raise AudioQuotaExceeded(
            f"{this} client has {left:.0f} s of audio left today, of {limit} s "
            f"(MAX_AUDIO_SECONDS_PER_DAY); the allowance starts again at 00:00 UTC.",
            limit="MAX_AUDIO_SECONDS_PER_DAY", retry_after=_seconds_to_midnight_utc(datetime.now(UTC)))
