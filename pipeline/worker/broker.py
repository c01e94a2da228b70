"""The worker's broker. ``dramatiq pipeline.worker.broker pipeline.worker.actors`` imports this module first,
and Dramatiq's CLI expects it to set the global broker as a side effect of that import; the
web process builds its own through ``pipeline.rabbitmq.build_broker`` and never imports this.
"""

from __future__ import annotations

import sys
from typing import Any

import dramatiq

from pipeline.hygiene import check_redis_policy
from pipeline.logs import configure_logging
from pipeline.queues import DIARIZE_QUEUE
from pipeline.rabbitmq import build_broker
from pipeline.settings import Settings
from pipeline.storage import from_url
from pipeline.stores import Stores, check_storage, connect_redis
from pipeline.worker.heartbeat import Heartbeat
from pipeline.worker.housekeeping import Housekeeping
from pipeline.worker.middleware import (
    PreloadLive,
    PreloadModel,
    PreloadVad,
    RecycleAfter,
    RecycleWhenIdle,
    TrimMemory,
    worker_metrics,
)


def _describe() -> dict[str, Any]:
    from pipeline.worker.context import worker_context
    from pipeline.worker.engines import choose_device

    ctx = worker_context()
    choice = choose_device(ctx.settings)
    return {
        "device": choice.device,
        "device_reason": choice.reason,
        "models": [f"{k.engine}:{k.model}:{k.device}:{k.compute_type}" for k in ctx.models.loaded()],
    }


def _diarization_loaded() -> bool:
    # Only a diarize job imports the models module; a process that never ran one holds nothing.
    models = sys.modules.get("pipeline.worker.diarization.models")
    return models is not None and bool(models.loaded_devices())


def _redis() -> Any:
    from pipeline.worker.context import worker_context

    return worker_context().redis


def _stores() -> Stores:
    from pipeline.worker.context import worker_context

    return worker_context()


def _refuse_evicting_redis(settings: Settings) -> None:
    """A Redis that may evict keys would drop jobs in progress without a word: refuse it
    before a message is taken (a SettingsError stops the worker with the fix in its text)."""
    client = connect_redis(settings, socket_timeout=5)
    try:
        check_redis_policy(client)
    finally:
        client.close()


settings = Settings.from_env()
configure_logging(settings.log_format)
# Before any message: a store that is down or refuses stops the worker with the reason.
check_storage(from_url(settings.storage_location))
_refuse_evicting_redis(settings)
broker = build_broker(settings)
if settings.max_tasks_per_child > 0:
    broker.add_middleware(RecycleAfter(settings.max_tasks_per_child))
broker.add_middleware(Heartbeat(_describe, _redis))
# Webhook deliveries that are due, stuck jobs, pruning: a thread in every worker process.
broker.add_middleware(Housekeeping(_stores))
# A transcriber loads the default model as it boots, not on its first job.
broker.add_middleware(PreloadModel())
# ... and an extract worker its speech detector, and a live worker its copies of the model.
broker.add_middleware(PreloadVad())
broker.add_middleware(PreloadLive())
# A diarizer loads its models with its first job (3-5 s on a CPU) and lets them go when idle.
broker.add_middleware(RecycleWhenIdle(DIARIZE_QUEUE, settings.diarizer_idle_seconds, _diarization_loaded))
broker.add_middleware(TrimMemory())
if settings.worker_metrics_port:
    broker.add_middleware(worker_metrics(settings.worker_metrics_port, settings.worker_metrics_bind))
dramatiq.set_broker(broker)
