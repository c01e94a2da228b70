"""api/health.py: /api/health and /api/gpu-status read from the workers' heartbeats in the real Redis
(the RabbitMQ check is stood in for: its own tests are in tests/unit/test_health.py)."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
import redis
from flask import Flask, g
from flask.testing import FlaskClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from api import health
from api.errors import register_error_handlers
from api.state import ApiState, init_state
from pipeline.keys import WORKERS_RECORDS_KEY, WORKERS_SEEN_KEY
from pipeline.settings import Settings

GPU = {"index": 0, "name": "H200", "memory_total": 100, "memory_used": 10, "memory_fraction": 0.1,
       "utilization": 5, "temperature": 40}


def beat(redis_client: redis.Redis, host: str, pid: int, ago: float = 0.0, **record: Any) -> None:
    # What a worker's heartbeat writes, on Redis's clock.
    seconds, micros = cast(tuple[int, int], redis_client.time())
    member = f"{host}:{pid}"
    redis_client.zadd(WORKERS_SEEN_KEY, {member: seconds + micros / 1e6 - ago})
    redis_client.hset(WORKERS_RECORDS_KEY, member, json.dumps({"host": host, "pid": pid, **record}))


def app_on(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, *, rabbit: bool = True,
           admin: bool = True) -> FlaskClient:
    monkeypatch.setattr(health, "_rabbitmq_ok", lambda url: rabbit)
    app = Flask(__name__)
    app.register_blueprint(health.bp)
    register_error_handlers(app)
    none = cast(Any, None)
    init_state(app, ApiState(settings=Settings(), redis=redis_client, jobs=none, cache=none, broker=none, hub=none,
                             limits=none, storage=none))
    app.before_request(lambda: setattr(g, "is_admin", admin))
    return app.test_client()


def test_no_live_worker_is_degraded_but_up(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    beat(redis_client, "old", 1, ago=60, queues=["transcribe"])  # beat long ago: dead
    answer = app_on(redis_client, monkeypatch).get("/api/health")
    assert answer.status_code == 200
    assert answer.json == {"status": "degraded", "redis": "ok", "rabbitmq": "ok", "workers": 0, "queues_served": []}


def test_live_workers_make_it_ok_with_the_queues_they_serve(redis_client: redis.Redis,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    beat(redis_client, "a", 1, queues=["transcribe", "extract"])
    beat(redis_client, "b", 2, queues=["extract", "diarize"])
    answer = app_on(redis_client, monkeypatch).get("/api/health")
    assert answer.status_code == 200
    assert answer.json == {"status": "ok", "redis": "ok", "rabbitmq": "ok", "workers": 2,
                           "queues_served": ["diarize", "extract", "transcribe"]}


def test_rabbitmq_down_is_a_503_whatever_the_workers(redis_client: redis.Redis,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    beat(redis_client, "a", 1, queues=["transcribe"])
    answer = app_on(redis_client, monkeypatch, rabbit=False).get("/api/health")
    assert answer.status_code == 503
    assert answer.json is not None and (answer.json["status"], answer.json["rabbitmq"]) == ("unavailable", "down")


def test_redis_down_is_a_503_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on port 1; no retries, so that the refusal is answered at once.
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    answer = app_on(gone, monkeypatch).get("/api/health")
    assert answer.status_code == 503
    assert answer.json == {"status": "unavailable", "redis": "down", "rabbitmq": "ok", "workers": 0,
                           "queues_served": []}


def test_gpu_status_lists_each_live_workers_device_and_counts_gpus(redis_client: redis.Redis,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    beat(redis_client, "gpu-host", 7, queues=["transcribe"], device="cuda", device_reason="", gpus=[GPU, GPU],
         models=["tiny.en"], jobs_done=3, seen_at=1.0, busy=1, threads=2)
    beat(redis_client, "cpu-host", 8, queues=["extract"], device="cpu", gpus=[], models=[], jobs_done=0, seen_at=2.0)
    body = app_on(redis_client, monkeypatch).get("/api/gpu-status").json
    assert body is not None and (body["gpu_count"], body["cuda_workers"]) == (2, 1)
    assert [w["host"] for w in body["workers"]] == ["cpu-host", "gpu-host"]
    # Only the listed fields go out: a record's other keys (busy, threads) stay inside.
    assert body["workers"][1] == {"host": "gpu-host", "pid": 7, "queues": ["transcribe"], "device": "cuda",
                                  "device_reason": "", "gpus": [GPU, GPU], "models": ["tiny.en"], "jobs_done": 3,
                                  "seen_at": 1.0}


def test_gpu_status_is_for_admin_keys_only(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = app_on(redis_client, monkeypatch, admin=False).get("/api/gpu-status")
    assert answer.status_code == 403
    assert answer.json is not None and answer.json["error"]["code"] == "forbidden"
