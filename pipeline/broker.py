"""The worker's broker. ``dramatiq pipeline.broker pipeline.actors`` imports this module first,
and Dramatiq's CLI expects it to set the global broker as a side effect of that import; the
web process builds its own through ``pipeline.queues.build_broker`` and never imports this.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from pipeline.heartbeat import Heartbeat
from pipeline.logs import configure_logging
from pipeline.middleware import worker_metrics
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
    broker.add_middleware(worker_metrics(settings.worker_metrics_port))
dramatiq.set_broker(broker)
