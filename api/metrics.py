"""``GET /metrics``: the service's metrics in Prometheus's text format."""

from __future__ import annotations

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.auth import bearer, same_secret
from api.state import state
from pipeline.errors import Unauthorized
from pipeline.metrics_export import QueueDepth, ServiceCollector

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    st = state()
    token = st.settings.metrics_token
    if token and not same_secret(bearer(request), token):
        raise Unauthorized("Send METRICS_TOKEN as 'Authorization: Bearer <token>' to read /metrics.")
    registry: CollectorRegistry | None = st.extras.get("metrics_registry")
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ServiceCollector(st.redis, QueueDepth(st.settings.rabbitmq_url)))
        st.extras["metrics_registry"] = registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
