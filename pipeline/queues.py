"""Queues, actor names, the broker's construction, and sending a stage's message.

The web process builds its broker and enqueues through here, so that it never imports the
actors (and with them the engines).
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from pipeline.middleware import RecycleAfter
from pipeline.settings import Settings

EXTRACT_QUEUE = "extract"
TRANSCRIBE_QUEUE = "transcribe"
DIARIZE_QUEUE = "diarize"  # who spoke when, beside transcribe: a CPU host can serve it alone
NOTIFY_QUEUE = "notify"
QUEUES = (EXTRACT_QUEUE, TRANSCRIBE_QUEUE, DIARIZE_QUEUE, NOTIFY_QUEUE)

EXTRACT_ACTOR = "extract_audio"
TRANSCRIBE_ACTOR = "transcribe_audio"
CHUNK_ACTOR = "transcribe_chunk"
DIARIZE_ACTOR = "diarize_audio"
NOTIFY_ACTOR = "notify_webhook"

ACTOR_QUEUES = {
    EXTRACT_ACTOR: EXTRACT_QUEUE,
    TRANSCRIBE_ACTOR: TRANSCRIBE_QUEUE,
    CHUNK_ACTOR: TRANSCRIBE_QUEUE,
    DIARIZE_ACTOR: DIARIZE_QUEUE,
    NOTIFY_ACTOR: NOTIFY_QUEUE,
}


class SharedConnectionBroker(RabbitmqBroker):
    """The web process's broker: one connection and channel for the whole process, one publish
    at a time.

    Dramatiq keeps a connection per thread (``threading.local``). Under gunicorn's gevent
    worker that local is per greenlet, that is per request: every upload would open a
    connection of its own and leave it open. A publish with confirms takes about a
    millisecond, so taking turns on one connection costs the API nothing it would notice.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = SimpleNamespace()  # type: ignore[assignment]
        # Made here, not at import: under gevent the patched (cooperative) lock is wanted.
        self._publishing = threading.RLock()

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        with self._publishing:
            return super().enqueue(message, delay=delay)


def build_broker(settings: Settings, *, shared_connection: bool = False) -> RabbitmqBroker:
    """``shared_connection``: for the web process (see ``SharedConnectionBroker``); the workers
    keep Dramatiq's connection per thread, which their consumers rely on."""
    middleware = [
        AgeLimit(),
        # Dramatiq's defaults are a 10-minute limit and 20 retries; ours come from the settings.
        TimeLimit(time_limit=settings.job_time_limit_seconds * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=settings.max_retries, min_backoff=1000, max_backoff=30_000),
        CurrentMessage(),
    ]
    if settings.max_tasks_per_child > 0:
        middleware.append(RecycleAfter(settings.max_tasks_per_child))
    # Publisher confirms: a job is answered 202 only once RabbitMQ has taken its message.
    kind = SharedConnectionBroker if shared_connection else RabbitmqBroker
    return kind(url=settings.rabbitmq_url, middleware=middleware, confirm_delivery=True)


def send(broker: dramatiq.Broker, actor_name: str, task_id: str) -> dramatiq.Message[None]:
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=ACTOR_QUEUES[actor_name],
        actor_name=actor_name,
        args=(task_id,),
        kwargs={},
        options={},
    )
    return broker.enqueue(message)
