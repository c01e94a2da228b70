"""The worker's broker. ``dramatiq pipeline.broker pipeline.actors`` imports this module first,
and Dramatiq's CLI expects it to set the global broker as a side effect of that import; the
web process builds its own through ``pipeline.queues.build_broker`` and never imports this.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import dramatiq

from pipeline.heartbeat import Heartbeat
from pipeline.logs import configure_logging
from pipeline.queues import build_broker
from pipeline.settings import Settings


def _describe() -> dict[str, Any]:
    from pipeline.context import worker_context
    from pipeline.engines import choose_device

    ctx = worker_context()
    choice = choose_device(ctx.settings)
    return {
        "device": choice.device,
        "device_reason": choice.reason,
        "models": [f"{k.engine}:{k.model}:{k.device}:{k.compute_type}" for k in ctx.models.loaded()],
    }


def _redis() -> Any:
    from pipeline.context import worker_context

    return worker_context().redis


settings = Settings.from_env()
configure_logging(settings.log_format)
broker = build_broker(settings)
broker.add_middleware(Heartbeat(_describe, _redis))
if settings.worker_metrics_port:
    # Dramatiq's exporter reads its port and database folder from the environment on import.
    os.environ["dramatiq_prom_port"] = str(settings.worker_metrics_port)
    os.environ.setdefault("dramatiq_prom_db", os.path.join(
        tempfile.gettempdir(), f"dramatiq-prometheus-{settings.worker_metrics_port}"))
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())
dramatiq.set_broker(broker)
