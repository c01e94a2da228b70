"""Where jobs, results and cached transcripts live (Redis), and a job's files (``storage``:
a folder or a bucket, ``pipeline.storage``), wired from the settings.

Both processes need this and only the worker needs the engines, so it stands apart from
``pipeline.worker.context``: the web process builds its stores here and never imports a model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import cast

import redis

from pipeline.cache import ResultCache
from pipeline.errors import StorageUnavailable
from pipeline.jobs import JobStore
from pipeline.leases import Leases
from pipeline.settings import Settings
from pipeline.storage import Storage, from_url

log = logging.getLogger(__name__)


@dataclass
class Stores:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    cache: ResultCache
    # Built from STORAGE_URL when not given (tests that build Stores by hand leave it out).
    storage: Storage = field(default=cast(Storage, None))
    leases: Leases = field(default=cast(Leases, None))

    def __post_init__(self) -> None:
        if self.storage is None:
            self.storage = from_url(self.settings.storage_location)
        if self.leases is None:
            self.leases = Leases(self.redis)


def check_storage(storage: Storage) -> None:
    """The start-up check of the API and the workers: the store answers and takes writes (the
    bucket made when absent), else a ``StorageUnavailable`` that names STORAGE_URL, the endpoint
    and the bucket, so the process stops with it rather than failing every job later."""
    try:
        storage.check()
    except StorageUnavailable as exc:
        log.error("start-up: STORAGE_URL=%s: %s", storage.url, exc.message)
        raise StorageUnavailable(f"STORAGE_URL={storage.url}: {exc.message}") from exc


def connect_redis(settings: Settings, *, socket_timeout: float = 30,
                  max_connections: int | None = None) -> redis.Redis:
    """The API passes a short ``socket_timeout``: a Redis that hangs must turn into a quick 503,
    not a request thread held for half a minute. It also passes ``max_connections``: under the
    gevent worker a thousand clients may ask at once, and they take turns on that many
    connections (waiting up to ``socket_timeout`` for one) rather than opening one each."""
    options = {"decode_responses": True, "socket_connect_timeout": 5, "socket_timeout": socket_timeout,
               "health_check_interval": 30}
    if max_connections:
        pool = redis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=max_connections, timeout=socket_timeout, **options)
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(settings.redis_url, **options)


def make_jobs(settings: Settings, client: redis.Redis) -> JobStore:
    return JobStore(client, result_ttl=settings.result_ttl_seconds)


def make_cache(settings: Settings, client: redis.Redis) -> ResultCache:
    return ResultCache(
        client,
        enabled=settings.enable_cache,
        size=settings.cache_size,
        ttl=settings.cache_ttl_seconds,
        disk_dir=settings.cache_dir if settings.enable_disk_cache else None,
    )


def open_stores(settings: Settings, *, socket_timeout: float = 30, max_connections: int | None = None) -> Stores:
    """Connects lazily: redis-py opens its first connection on the first command."""
    client = connect_redis(settings, socket_timeout=socket_timeout, max_connections=max_connections)
    return Stores(
        settings=settings,
        redis=client,
        jobs=make_jobs(settings, client),
        cache=make_cache(settings, client),
        storage=from_url(settings.storage_location),
    )
