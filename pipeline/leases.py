"""Leases: one worker runs a job's stage at a time. A lease is a Redis key holding its holder's
token, with a TTL the holder renews while it works."""

from __future__ import annotations

import redis

from pipeline.keys import job_lease_key

# Renew or drop only a lease this holder still has: one that lapsed and was taken by another
# delivery is not this holder's to touch.
_LEASE = """
local key, token, action, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', key) ~= token then return 0 end
if action == 'drop' then return redis.call('DEL', key) end
return redis.call('EXPIRE', key, ttl)
"""


class Leases:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._lease = client.register_script(_LEASE)

    def take(self, task_id: str, token: str, ttl: int, part: str = "") -> bool:
        """Hold the job for one stage run. A second delivery of the same message (RabbitMQ
        redelivers when a channel closes under a running job) finds the lease taken and stays
        out; a holder that dies stops renewing and the lease lapses within ``ttl`` seconds."""
        return bool(self.redis.set(job_lease_key(task_id, part), token, nx=True, ex=ttl))

    def renew(self, task_id: str, token: str, ttl: int, part: str = "") -> bool:
        return bool(self._lease(keys=[job_lease_key(task_id, part)], args=[token, "renew", ttl]))

    def drop(self, task_id: str, token: str, part: str = "") -> None:
        self._lease(keys=[job_lease_key(task_id, part)], args=[token, "drop", 0])
