"""Health of the service's dependencies."""

from __future__ import annotations

import pika
from flask import Blueprint, Response, jsonify

from api.state import state

bp = Blueprint("health", __name__, url_prefix="/api")


def _rabbitmq_ok(url: str) -> bool:
    params = pika.URLParameters(url)
    params.socket_timeout = 2
    params.blocked_connection_timeout = 2
    params.connection_attempts = 1
    try:
        pika.BlockingConnection(params).close()
        return True
    except Exception:  # noqa: BLE001 - any failure to connect means "down"
        return False


@bp.get("/health")
def health() -> tuple[Response, int]:
    st = state()
    try:
        redis_ok = bool(st.redis.ping())
    except Exception:  # noqa: BLE001
        redis_ok = False
    rabbit_ok = _rabbitmq_ok(st.settings.rabbitmq_url)
    healthy = redis_ok and rabbit_ok
    body = {
        "status": "ok" if healthy else "unavailable",
        "redis": "ok" if redis_ok else "down",
        "rabbitmq": "ok" if rabbit_ok else "down",
    }
    return jsonify(body), 200 if healthy else 503
