"""``GET /metrics``: the service's metrics in Prometheus's text format."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.auth import address, auth_of, bearer, same_secret
from api.state import state
from pipeline.errors import Unauthorized
from pipeline.metrics_export import QueueDepth, ServiceCollector

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Open only where the service is open (no keys, no METRICS_TOKEN); otherwise for
    METRICS_TOKEN or an admin key: the counters say how much every client uses the service."""
    st = state()
    token = st.settings.metrics_token
    if token or st.settings.keys_on:
        check = auth_of(current_app)
        if check.failures is not None:
            check.failures.check(address())
        given = bearer(request)
        key = check.find(given) if st.settings.keys_on else None
        if not ((token and same_secret(given, token)) or (key is not None and key in st.settings.admin_api_keys)):
            check.failed(address())
            raise Unauthorized("Send METRICS_TOKEN or an admin key (ADMIN_API_KEYS) as "
                               "'Authorization: Bearer <token>' to read /metrics.")
    registry: CollectorRegistry | None = st.extras.get("metrics_registry")
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ServiceCollector(st.redis, QueueDepth(st.settings.rabbitmq_url)))
        st.extras["metrics_registry"] = registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
