"""Every Redis key and channel the service uses, built in one place. All of them start with
``wp:``, so that the service can share a Redis database and an operator can find its keys.

The job's own keys hang under ``wp:job:<id>`` and expire with it; the indexes and sets below are
pruned by time (pipeline/hygiene.py checks that every kind has a TTL or a pruner)."""

from __future__ import annotations

PREFIX = "wp"


# -- one job ----------------------------------------------------------------------------------
def job_key(task_id: str) -> str:
    """The job record (a hash)."""
    return f"{PREFIX}:job:{task_id}"


def job_history_key(task_id: str) -> str:
    return f"{job_key(task_id)}:history"  # list: every transition, as JSON


def job_segments_key(task_id: str) -> str:
    return f"{job_key(task_id)}:segments"  # list: the segments decoded so far


def job_result_key(task_id: str) -> str:
    return f"{job_key(task_id)}:result"  # the transcript, as JSON


def job_cancel_key(task_id: str) -> str:
    return f"{job_key(task_id)}:cancel"


def job_chunks_key(task_id: str) -> str:
    return f"{job_key(task_id)}:chunks"  # hash: chunk index -> its transcript


def job_parts_key(task_id: str) -> str:
    return f"{job_key(task_id)}:parts"  # hash: transcribe / diarize -> its result


def job_redacted_audio_key(task_id: str) -> str:
    return f"{job_key(task_id)}:redacted-audio"  # WAV, base64: the audio with its PII spans toned out


def job_lease_key(task_id: str, part: str = "") -> str:
    return f"{job_key(task_id)}:lease{part}"


def events_channel(task_id: str) -> str:
    """The job's pub/sub channel (the transition script publishes on ``job_key + ':events'``)."""
    return f"{job_key(task_id)}:events"


# -- indexes of jobs --------------------------------------------------------------------------
QUEUED_KEY = f"{PREFIX}:queued"
# Non-final jobs scored by when they last moved, for the reconciler; and finished jobs' webhook
# deliveries scored by when they are due (pipeline.outbox).
ACTIVE_KEY = f"{PREFIX}:active"
WEBHOOKS_DUE_KEY = f"{PREFIX}:webhooks:due"


def jobs_index_key(owner: str | None) -> str:
    """Jobs by creation time, for listing: one index per client where keys are on."""
    return f"{PREFIX}:jobs:{owner}" if owner else f"{PREFIX}:jobs"


# -- metrics ----------------------------------------------------------------------------------
METRICS_KEY = f"{PREFIX}:metrics:jobs"
STAGE_SECONDS_KEY = f"{PREFIX}:metrics:state_seconds"
COUNTERS_KEY = f"{PREFIX}:metrics:counters"

# -- the transcript cache ---------------------------------------------------------------------
CACHE_PREFIX = f"{PREFIX}:cache"
CACHE_LRU_KEY = f"{CACHE_PREFIX}:lru"
CACHE_STATS_KEY = f"{CACHE_PREFIX}:stats"


def cache_entry_key(digest: str) -> str:
    return f"{CACHE_PREFIX}:entry:{digest}"


def cache_claim_key(digest: str) -> str:
    return f"{CACHE_PREFIX}:claim:{digest}"


def diarize_turns_key(digest: str) -> str:
    """Speaker turns shared by twins that asked for the same speakers of the same input."""
    return f"{PREFIX}:diarize:turns:{digest}"


# -- workers and housekeeping -----------------------------------------------------------------
WORKERS_SEEN_KEY = f"{PREFIX}:workers"  # sorted set: "host:pid" scored by when it last beat
WORKERS_RECORDS_KEY = f"{PREFIX}:workers:records"  # hash: "host:pid" -> its record (JSON)
SPLIT_RESERVED_KEY = f"{PREFIX}:split:reserved"  # sorted set: "<task_id>:<n>" scored by when reserved
ORPHANS_KEY = f"{PREFIX}:storage:orphans"  # task id -> when the janitor first saw it without a job
HOUSEKEEPING_RAN_KEY = f"{PREFIX}:housekeeping:ran"
HOUSEKEEPING_LOCK_KEY = f"{PREFIX}:housekeeping:lock"
FANOUT_CHANNEL = f"{PREFIX}:fanout"


def webhook_claim_key(task_id: str) -> str:
    """Held while one worker delivers a job's webhook, so that two never send it at once."""
    return f"{WEBHOOKS_DUE_KEY}:claim:{task_id}"


# -- live sessions (pipeline/live.py): each key expires, and a closed session's go within a minute --
def live_key(session_id: str) -> str:
    """The session's record (a hash)."""
    return f"{PREFIX}:live:{session_id}"


def live_in_key(session_id: str) -> str:
    return f"{live_key(session_id)}:in"  # stream: the client's audio and commands, in order


def live_out_key(session_id: str) -> str:
    return f"{live_key(session_id)}:out"  # stream (capped): the server events for the client


def live_wake_channel(session_id: str) -> str:
    return f"{live_key(session_id)}:wake"  # pub/sub: the out stream has news


def live_lease_key(session_id: str) -> str:
    return f"{live_key(session_id)}:lease"  # the worker holding the session


def client_key(client: str, what: str) -> str:
    """A client's limits: its open streams, its active jobs, its audio seconds of one day."""
    return f"{PREFIX}:client:{client}:{what}"
