"""Redis hygiene: what keeps the keyspace bounded, and the start-up check that Redis will not
evict jobs.

Every key the service writes either has a TTL or is pruned by time:
- a job's keys (record, history, result, segments, chunks, redacted audio) expire RESULT_TTL_SECONDS after it
  ends; a job that never ends is ended by the reconciler (``pipeline.worker.reconciler``);
- leases, cancellation flags, transcription claims, locks, rate-limit counters: their own TTLs;
- the listing indexes (``wp:jobs``, ``wp:jobs:<owner>``) and the queue-position set
  (``wp:queued``) drop members older than a job can live at each job created, and expire as a
  whole when no job is created for that long;
- the active-job index and the webhook outbox are pruned by the reconciler and the sweeper;
- heartbeats live in one sorted set and one hash, pruned at each beat, expiring when no
  worker beats;
- cache entries expire after CACHE_TTL_SECONDS; their files on disk are deleted by
  ``ResultCache.prune_disk``, which the housekeeping runner calls.
Metrics hashes are the exception: a fixed set of fields, so they never grow.
"""

from __future__ import annotations

import logging
from typing import cast

import redis

from pipeline.errors import SettingsError
from pipeline.keys import QUEUED_KEY, job_key

log = logging.getLogger(__name__)

# Policies under which Redis never drops a key to make room. allkeys-* drop any key, and
# volatile-* drop keys with a TTL: leases, claims and finished jobs, all of which we rely on.
SAFE_POLICIES = frozenset({"noeviction"})
PRUNE_BATCH = 1000


def check_redis_policy(client: redis.Redis) -> str | None:
    """Refuse to start on a Redis that may evict our keys; return the policy read.

    Returns None when the policy cannot be read (Redis down: the start-up goes on and health
    says so; CONFIG disabled, as on some managed services: a warning says what to check)."""
    try:
        raw = cast(dict[str, str], client.config_get("maxmemory-policy"))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("could not read Redis's maxmemory-policy (%s); it must be noeviction", exc)
        return None
    except redis.ResponseError as exc:
        log.warning("Redis does not allow CONFIG GET (%s): make sure its maxmemory-policy is "
                    "noeviction, or it may drop jobs in progress when it fills up", exc)
        return None
    policy = raw.get("maxmemory-policy")
    if isinstance(policy, bytes):
        policy = policy.decode()
    if policy is None:
        return None
    if policy not in SAFE_POLICIES:
        raise SettingsError(
            f"Redis's maxmemory-policy is {policy}: when it reaches maxmemory it evicts keys "
            f"({'any key' if policy.startswith('allkeys') else 'keys with a TTL'}), and this "
            "service's keys are jobs in progress, their leases and results. Set it to noeviction "
            "(`redis-cli CONFIG SET maxmemory-policy noeviction`, and `maxmemory-policy "
            "noeviction` in redis.conf or your managed Redis's parameters so that it stays), "
            "then start again.")
    return policy


def prune_queued(client: redis.Redis, limit: int = PRUNE_BATCH) -> int:
    """Drop members of the queue-position set whose job is no longer queued (its record
    expired or was deleted: the transition that would have removed it never ran)."""
    members = cast(list[str], client.zrange(QUEUED_KEY, 0, limit - 1))
    if not members:
        return 0
    pipe = client.pipeline(transaction=False)
    for task_id in members:
        pipe.hget(job_key(task_id), "status")
    statuses = pipe.execute()
    gone = [t for t, s in zip(members, statuses, strict=True) if s not in ("queued", b"queued")]
    if gone:
        client.zrem(QUEUED_KEY, *gone)
    return len(gone)
