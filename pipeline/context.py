"""What a stage needs to run, built once per process from the settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import redis

from pipeline.cache import ResultCache
from pipeline.engines import ModelCache
from pipeline.jobs import JobStore
from pipeline.settings import Settings


@dataclass
class Context:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    cache: ResultCache
    models: ModelCache = field(repr=False)


def connect_redis(settings: Settings, *, socket_timeout: float = 30) -> redis.Redis:
    """The API passes a short ``socket_timeout``: a Redis that hangs must turn into a quick 503,
    not a request thread held for half a minute."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=socket_timeout,
        health_check_interval=30,
    )


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


def build_context(settings: Settings) -> Context:
    client = connect_redis(settings)
    settings.ensure_dirs()
    return Context(
        settings=settings,
        redis=client,
        jobs=make_jobs(settings, client),
        cache=make_cache(settings, client),
        # Models load lazily on first use, so building a context never loads one.
        models=ModelCache(settings),
    )


@functools.cache
def worker_context() -> Context:
    """The worker process's context, from its environment, built on the first message."""
    return build_context(Settings.from_env())
