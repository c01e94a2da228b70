"""Transcript cache in Redis, keyed by the uploaded bytes and every option that changes the output.

With ENABLE_DISK_CACHE the entries are also written to CACHE_DIR, so that they survive a
Redis restart or flush; a Redis miss then falls back to the disk and refills Redis.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import redis

from pipeline.keys import CACHE_LRU_KEY, CACHE_STATS_KEY, cache_claim_key, cache_entry_key
from pipeline.options import TranscribeOptions
from pipeline.transcript import Transcript

log = logging.getLogger(__name__)

PARTIAL_GRACE_SECONDS = 3600  # a partial file younger than this may still be being written


def scoped(sha256: str, scope: str) -> str:
    """The cache's name for an input of digest ``sha256`` seen by ``scope`` (a client, with
    CACHE_SCOPE=client and keys on; "" where every client shares one cache). A client never
    hits, or learns of, another's transcript of the same recording."""
    if not scope or not sha256:
        return sha256
    return hashlib.sha256(f"scope:{scope}\n{sha256}".encode()).hexdigest()


def cache_digest(sha256: str, options: TranscribeOptions) -> str:
    return hashlib.sha256(f"{sha256}\n{options.fingerprint()}".encode()).hexdigest()


def cache_key(sha256: str, options: TranscribeOptions) -> str:
    return cache_entry_key(cache_digest(sha256, options))


def _claim_key(sha256: str, options: TranscribeOptions) -> str:
    return cache_claim_key(cache_digest(sha256, options))


# KEYS: claim. ARGV: owner, ttl, take | renew | drop
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == 'take' and not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
if holder ~= ARGV[1] then return 0 end
if ARGV[3] == 'drop' then return redis.call('DEL', KEYS[1]) end
return redis.call('EXPIRE', KEYS[1], ARGV[2])
"""


class ResultCache:
    """Entries expire after ``ttl`` seconds; beyond ``size`` entries the least recently used go.

    Recency lives in a sorted set beside the entries; an entry whose TTL ran out leaves a stale
    member there, which the next trim removes.
    """

    def __init__(
        self, client: redis.Redis, *, enabled: bool, size: int, ttl: int, disk_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.clock = clock  # for recency only; disk entries age by their files' wall-clock mtime
        self.enabled = enabled
        self.size = size
        self.ttl = ttl
        self.disk_dir = disk_dir
        if disk_dir is not None:
            disk_dir.mkdir(parents=True, exist_ok=True)
        self._claim = client.register_script(_CLAIM)

    # -- entries -------------------------------------------------------------------------
    def get(self, sha256: str, options: TranscribeOptions) -> Transcript | None:
        """Look up an entry, counting the hit or miss."""
        if not self.enabled or not sha256:
            return None
        found = self.peek(sha256, options)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(CACHE_STATS_KEY, "hits" if found is not None else "misses", 1)
        if found is not None:
            pipe.zadd(CACHE_LRU_KEY, {cache_key(sha256, options): self.clock()})
        pipe.execute()
        return found

    def peek(self, sha256: str, options: TranscribeOptions) -> Transcript | None:
        """Look up an entry without counting it (used while waiting for a twin job)."""
        if not self.enabled or not sha256:
            return None
        key = cache_key(sha256, options)
        raw = cast(str | None, self.redis.get(key))
        if raw is None:
            raw = self._from_disk(sha256, options)
        return None if raw is None else Transcript.from_dict(json.loads(raw))

    def put(self, sha256: str, options: TranscribeOptions, transcript: Transcript) -> None:
        if not self.enabled or not sha256:
            return
        key = cache_key(sha256, options)
        raw = json.dumps(transcript.to_dict())
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, raw, ex=self.ttl)
        pipe.zadd(CACHE_LRU_KEY, {key: self.clock()})
        pipe.execute()
        if self.disk_dir is not None:
            path = self._path(sha256, options)
            partial = path.with_suffix(f".{os.getpid()}.partial")
            partial.write_text(raw)
            os.replace(partial, path)
        self._trim()

    def _path(self, sha256: str, options: TranscribeOptions) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / f"{cache_digest(sha256, options)}.json"

    def _from_disk(self, sha256: str, options: TranscribeOptions) -> str | None:
        if self.disk_dir is None:
            return None
        path = self._path(sha256, options)
        try:
            age = time.time() - path.stat().st_mtime
            if age >= self.ttl:
                path.unlink(missing_ok=True)
                return None
            raw = path.read_text()
        except FileNotFoundError:
            return None
        key = cache_key(sha256, options)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, raw, ex=max(1, int(self.ttl - age)))
        pipe.zadd(CACHE_LRU_KEY, {key: self.clock()})
        pipe.execute()
        self._trim()
        return raw

    def _trim(self) -> None:
        if int(cast(int, self.redis.zcard(CACHE_LRU_KEY))) <= self.size:
            return
        # Members whose entry expired take no room: forget them before counting.
        members = cast(list[str], self.redis.zrange(CACHE_LRU_KEY, 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        for key in members:
            pipe.exists(key)
        alive = pipe.execute()
        stale = [k for k, ok in zip(members, alive, strict=True) if not ok]
        live = [k for k, ok in zip(members, alive, strict=True) if ok]
        evicted = live[: max(0, len(live) - self.size)]  # oldest first: zrange is by recency
        gone = stale + evicted
        if not gone:
            return
        pipe = self.redis.pipeline(transaction=True)
        if evicted:
            pipe.delete(*evicted)
        pipe.zrem(CACHE_LRU_KEY, *gone)
        pipe.execute()
        if self.disk_dir is not None:
            for key in evicted:
                (self.disk_dir / f"{key.rsplit(':', 1)[-1]}.json").unlink(missing_ok=True)

    # -- one transcription per distinct input --------------------------------------------
    # Each claim operation is one script: a check and a write in two round trips let a claim
    # that lapsed in between be extended or deleted under its next holder, and two jobs would
    # both transcribe.
    def claim(self, sha256: str, options: TranscribeOptions, owner: str, ttl: int = 120) -> bool:
        """Take the right to transcribe this input; False while another job holds it.

        The claim is short-lived and renewed as segments arrive, so a holder that dies frees
        it within ``ttl`` seconds. Claiming again as the same owner (a redelivered message)
        extends it."""
        if not self.enabled:
            return True  # without a cache a twin's result could not be shared anyway
        return bool(self._claim(keys=[_claim_key(sha256, options)], args=[owner, ttl, "take"]))

    def renew(self, sha256: str, options: TranscribeOptions, ttl: int = 120, owner: str | None = None) -> bool:
        """Extend the claim while ``owner`` still holds it (without an owner: whoever holds it,
        for callers that predate tokens). False when the claim is someone else's or gone."""
        if owner is None:
            return bool(self.redis.expire(_claim_key(sha256, options), ttl))
        return bool(self._claim(keys=[_claim_key(sha256, options)], args=[owner, ttl, "renew"]))

    def release(self, sha256: str, options: TranscribeOptions, owner: str) -> bool:
        """Give the claim up, only if ``owner`` still holds it."""
        return bool(self._claim(keys=[_claim_key(sha256, options)], args=[owner, 0, "drop"]))

    def claimed(self, sha256: str, options: TranscribeOptions) -> bool:
        return bool(self.redis.exists(_claim_key(sha256, options)))

    # -- operators ------------------------------------------------------------------------
    def prune_disk(self, now: float | None = None) -> int:
        """Delete the disk entries whose TTL has run out, and partial files a writer killed
        mid-write left behind; return how many files went. Entries are otherwise only removed
        when read after expiring, so an input never asked for again would stay for ever."""
        if self.disk_dir is None:
            return 0
        now = time.time() if now is None else now
        removed = 0
        for pattern, age in (("*.json", self.ttl), ("*.partial", PARTIAL_GRACE_SECONDS)):
            for path in self.disk_dir.glob(pattern):
                try:
                    if now - path.stat().st_mtime >= age:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue  # a reader or another pruner was first
        return removed

    def stats(self) -> dict[str, float | int | bool]:
        raw = cast(dict[str, str], self.redis.hgetall(CACHE_STATS_KEY))
        hits, misses = int(raw.get("hits", 0)), int(raw.get("misses", 0))
        keys = cast(list[str], self.redis.zrange(CACHE_LRU_KEY, 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.strlen(key)
        sizes = [int(n) for n in pipe.execute()] if keys else []
        return {
            "enabled": self.enabled,
            "hits": hits,
            "misses": misses,
            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
            "entries": sum(1 for n in sizes if n),
            "bytes": sum(sizes),
            "max_entries": self.size,
            "ttl_seconds": self.ttl,
            "disk": self.disk_dir is not None,
        }

    def clear(self) -> int:
        keys = cast(list[str], self.redis.zrange(CACHE_LRU_KEY, 0, -1))
        pipe = self.redis.pipeline(transaction=True)
        if keys:
            pipe.delete(*keys)
        pipe.delete(CACHE_LRU_KEY, CACHE_STATS_KEY)
        pipe.execute()
        removed = len(keys)
        if self.disk_dir is not None:
            for path in self.disk_dir.glob("*.json"):
                path.unlink(missing_ok=True)
        return removed
