"""Worker heartbeats in Redis, read side: what the API knows about workers, on this host or
others (the workers write them: pipeline/worker/heartbeat.py).

Each worker process writes its record every few seconds into one hash, and the time it did
into one sorted set; readers take the members seen within the last ``TTL_SECONDS``
(ZRANGEBYSCORE, never a SCAN of the keyspace), so a dead worker disappears from /api/health
and /api/gpu-status on its own. Times are Redis's clock, so hosts whose clocks disagree still
agree on who is alive; every beat prunes the dead members, and both keys expire when no
worker beats at all.
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from pipeline.keys import WORKERS_RECORDS_KEY, WORKERS_SEEN_KEY

INTERVAL_SECONDS = 5.0
TTL_SECONDS = 15



# KEYS: seen, records. ARGV: ttl
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local members = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
if #members == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(members))
"""


def worker_member(host: str, pid: int) -> str:
    return f"{host}:{pid}"


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    values = cast(list[str | None], client.eval(_LIVE, 2, WORKERS_SEEN_KEY, WORKERS_RECORDS_KEY, TTL_SECONDS))
    records = [json.loads(v) for v in values if v]
    return sorted(records, key=lambda r: (str(r.get("host")), int(r.get("pid", 0))))


def beating_on(client: redis.Redis, host: str) -> bool:
    """Whether a worker process on ``host`` beat lately (the container health check's test)."""
    return any(w.get("host") == host for w in live_workers(client))


def forget_worker(client: redis.Redis, host: str, pid: int) -> None:
    member = worker_member(host, pid)
    pipe = client.pipeline(transaction=True)
    pipe.zrem(WORKERS_SEEN_KEY, member)
    pipe.hdel(WORKERS_RECORDS_KEY, member)
    pipe.execute()
