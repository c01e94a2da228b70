"""The API's long-lived collaborators, built once in ``create_app`` and kept on the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from flask import Flask, current_app

from api.events import EventHub
from api.limits import ClientLimits
from pipeline.cache import ResultCache
from pipeline.jobs import JobStore
from pipeline.settings import Settings
from pipeline.storage import Storage

EXTENSION = "whisper_pipeline"


@dataclass
class ApiState:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    cache: ResultCache
    broker: RabbitmqBroker
    hub: EventHub  # the process's one Redis subscriber, for event streams and waits
    limits: ClientLimits
    storage: Storage  # where uploads go: a folder or a bucket (STORAGE_URL)
    extras: dict[str, Any] = field(default_factory=dict)  # built on first use (metrics registry)


def init_state(app: Flask, state: ApiState) -> None:
    app.extensions[EXTENSION] = state


def end_streams(app: Flask) -> None:
    """End this process's event streams: it is stopping (``api/gunicorn_conf.py``)."""
    app_state: ApiState = app.extensions[EXTENSION]
    app_state.hub.end_streams()


def state() -> ApiState:
    result: ApiState = current_app.extensions[EXTENSION]
    return result
