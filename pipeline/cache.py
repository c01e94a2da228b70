"""Transcript cache in Redis, keyed by the uploaded bytes and every option that changes the output."""

from __future__ import annotations

import hashlib
import json
import time

import redis

from pipeline.options import TranscribeOptions
from pipeline.transcript import Transcript

PREFIX = "wp:cache"


def cache_key(sha256: str, options: TranscribeOptions) -> str:
    digest = hashlib.sha256(f"{sha256}\n{options.fingerprint()}".encode()).hexdigest()
    return f"{PREFIX}:entry:{digest}"


class ResultCache:
    """Entries expire after ``ttl`` seconds; beyond ``size`` entries the least recently used go.

    Recency lives in a sorted set beside the entries; an entry whose TTL ran out leaves a stale
    member there, which the next trim removes.
    """

    def __init__(self, client: redis.Redis, *, enabled: bool, size: int, ttl: int) -> None:
        self.redis = client
        self.enabled = enabled
        self.size = size
        self.ttl = ttl

    def get(self, sha256: str, options: TranscribeOptions) -> Transcript | None:
        if not self.enabled or not sha256:
            return None
        key = cache_key(sha256, options)
        raw = self.redis.get(key)
        pipe = self.redis.pipeline(transaction=False)
        if raw is None:
            pipe.hincrby(f"{PREFIX}:stats", "misses", 1)
        else:
            pipe.hincrby(f"{PREFIX}:stats", "hits", 1)
            pipe.zadd(f"{PREFIX}:lru", {key: time.time()})
        pipe.execute()
        return None if raw is None else Transcript.from_dict(json.loads(raw))

    def put(self, sha256: str, options: TranscribeOptions, transcript: Transcript) -> None:
        if not self.enabled or not sha256:
            return
        key = cache_key(sha256, options)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, json.dumps(transcript.to_dict()), ex=self.ttl)
        pipe.zadd(f"{PREFIX}:lru", {key: time.time()})
        pipe.execute()
        self._trim()

    def _trim(self) -> None:
        lru = f"{PREFIX}:lru"
        excess = int(self.redis.zcard(lru)) - self.size
        if excess > 0:
            oldest = self.redis.zrange(lru, 0, excess - 1)
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(*oldest)
            pipe.zrem(lru, *oldest)
            pipe.execute()

    def stats(self) -> dict[str, float | int]:
        raw = self.redis.hgetall(f"{PREFIX}:stats")
        hits, misses = int(raw.get("hits", 0)), int(raw.get("misses", 0))
        return {
            "enabled": self.enabled,
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
            "entries": int(self.redis.zcard(f"{PREFIX}:lru")),
        }

    def clear(self) -> int:
        keys = self.redis.zrange(f"{PREFIX}:lru", 0, -1)
        pipe = self.redis.pipeline(transaction=True)
        if keys:
            pipe.delete(*keys)
        pipe.delete(f"{PREFIX}:lru", f"{PREFIX}:stats")
        pipe.execute()
        return len(keys)
