"""Health of the service's dependencies and workers, and the workers' GPUs (from heartbeats)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pika

from api import schemas
from api.auth import require_admin
from api.blueprint import Blueprint
from api.state import ApiState, state
from pipeline.workers import live_workers

bp = Blueprint("health", __name__, url_prefix="/api", description="Service and worker health.")


def _rabbitmq_ok(url: str) -> bool:
    params = pika.URLParameters(url)
    params.socket_timeout = 2
    params.blocked_connection_timeout = 2
    params.stack_timeout = 3  # the whole handshake: a broker that accepts and then hangs
    params.connection_attempts = 1
    try:
        pika.BlockingConnection(params).close()
        return True
    except Exception:  # noqa: BLE001 - any failure to connect means "down"
        return False


# Health is asked often (load balancers, monitors, every client's page); a broker handshake
# each time is the bulk of its cost. One check in flight per process, its answer shared this long.
RABBITMQ_CHECK_SECONDS = 2.0


def _rabbitmq_ok_recently(st: ApiState) -> bool:
    lock: threading.Lock = st.extras.setdefault("rabbitmq_check_lock", threading.Lock())
    with lock:
        checked = st.extras.get("rabbitmq_check")
        if checked is None or time.monotonic() - checked[0] > RABBITMQ_CHECK_SECONDS:
            checked = st.extras["rabbitmq_check"] = (time.monotonic(), _rabbitmq_ok(st.settings.rabbitmq_url))
        return bool(checked[1])


@bp.get("/health")
@bp.response(200, schemas.Health)
@bp.alt_response(503, schema=schemas.Health, description="Redis or RabbitMQ is down")
def health() -> tuple[dict[str, Any], int]:
    """503 when Redis or RabbitMQ is down; with both up but no live worker, 200 and
    ``degraded``: jobs are accepted and wait in their queues."""
    st = state()
    try:
        redis_ok = bool(st.redis.ping())
        workers = live_workers(st.redis)
    except Exception:  # noqa: BLE001
        redis_ok, workers = False, []
    rabbit_ok = _rabbitmq_ok_recently(st)
    queues = sorted({q for w in workers for q in w.get("queues", [])})
    if not (redis_ok and rabbit_ok):
        status, code = "unavailable", 503
    elif not workers:
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    body = {
        "status": status,
        "redis": "ok" if redis_ok else "down",
        "rabbitmq": "ok" if rabbit_ok else "down",
        "workers": len(workers),
        "queues_served": queues,
    }
    return body, code


@bp.get("/gpu-status")
@bp.response(200, schemas.GpuStatus)
@bp.alt_response(403, schema=schemas.Error, description="a key that is not one of ADMIN_API_KEYS")
def gpu_status() -> dict[str, Any]:
    """Every live worker's device and GPU metrics, from heartbeats (none without a GPU).

    Host names and model paths: admin keys only, where keys are set."""
    require_admin("read the workers' status (host names, model paths)")
    workers = live_workers(state().redis)
    return {
        "workers": [
            {k: w.get(k) for k in ("host", "pid", "queues", "device", "device_reason", "gpus",
                                   "models", "jobs_done", "seen_at")}
            for w in workers
        ],
        "gpu_count": sum(len(w.get("gpus", [])) for w in workers),
        "cuda_workers": sum(1 for w in workers if w.get("device") == "cuda"),
    }
