"""pipeline/stores.py: the stores wired from the settings (without a Redis: nothing connects before
its first command), Redis's connection options, and the start-up storage check's error."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from pipeline.errors import StorageUnavailable
from pipeline.leases import Leases
from pipeline.settings import Settings
from pipeline.storage import LocalStorage
from pipeline.stores import Stores, check_storage, connect_redis, make_cache, make_jobs, open_stores

REDIS_URL = "redis://127.0.0.1:6379/7"  # never reached: the unit tier's guard fails any connection


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"REDIS_URL": REDIS_URL, "UPLOAD_DIR": str(tmp_path / "uploads"),
                              "CACHE_DIR": str(tmp_path / "cache"), **env})


def test_open_stores_wires_everything_from_the_settings_without_connecting(tmp_path: Path) -> None:
    settings = _settings(tmp_path, RESULT_TTL_SECONDS="1234", CACHE_SIZE="77", CACHE_TTL_SECONDS="99")
    stores = open_stores(settings)
    assert stores.settings is settings
    assert stores.jobs.redis is stores.redis and stores.jobs.result_ttl == 1234
    assert stores.cache.redis is stores.redis and (stores.cache.size, stores.cache.ttl) == (77, 99)
    assert isinstance(stores.storage, LocalStorage) and stores.storage.root == tmp_path / "uploads"
    assert isinstance(stores.leases, Leases) and stores.leases.redis is stores.redis
    assert stores.redis.connection_pool.connection_kwargs["db"] == 7


def test_stores_built_by_hand_get_storage_and_leases_from_the_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    client = connect_redis(settings)
    built = Stores(settings=settings, redis=client, jobs=make_jobs(settings, client),
                   cache=make_cache(settings, client))
    assert isinstance(built.storage, LocalStorage) and built.storage.url == str(tmp_path / "uploads")
    given = LocalStorage(tmp_path / "elsewhere")
    kept = Stores(settings=settings, redis=client, jobs=built.jobs, cache=built.cache, storage=given)
    assert kept.storage is given


def test_the_disk_cache_folder_is_passed_only_when_enabled(tmp_path: Path) -> None:
    client = connect_redis(_settings(tmp_path))
    assert make_cache(_settings(tmp_path), client).disk_dir is None
    on = make_cache(_settings(tmp_path, ENABLE_DISK_CACHE="true", ENABLE_CACHE="false"), client)
    assert on.disk_dir == tmp_path / "cache" and on.enabled is False


def test_a_plain_client_has_its_own_pool_with_the_timeouts_given(tmp_path: Path) -> None:
    client = connect_redis(_settings(tmp_path), socket_timeout=2.5)
    pool = client.connection_pool
    assert type(pool) is redis.ConnectionPool
    options = pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (2.5, 5)
    assert (options["decode_responses"], options["health_check_interval"]) == (True, 30)


def test_a_client_with_a_connection_limit_waits_its_turn_for_one(tmp_path: Path) -> None:
    client = connect_redis(_settings(tmp_path), socket_timeout=3, max_connections=16)
    pool = client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (16, 3)
    assert pool.connection_kwargs["socket_timeout"] == 3 and pool.connection_kwargs["decode_responses"] is True


def test_a_store_that_answers_passes_the_start_up_check(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    check_storage(storage)
    assert (tmp_path / "store" / "jobs").is_dir()


def test_a_store_that_fails_its_check_names_storage_url(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    storage = LocalStorage(blocker / "store")
    with pytest.raises(StorageUnavailable) as info:
        check_storage(storage)
    assert info.value.message.startswith(f"STORAGE_URL={blocker / 'store'}: The storage folder ")
    assert isinstance(info.value.__cause__, StorageUnavailable)
