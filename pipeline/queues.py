"""Queues, actor names, the broker's construction, and sending a stage's message.

The web process builds its broker and enqueues through here, so that it never imports the
actors (and with them the engines).
"""

from __future__ import annotations

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
NOTIFY_QUEUE = "notify"
QUEUES = (EXTRACT_QUEUE, TRANSCRIBE_QUEUE, NOTIFY_QUEUE)

EXTRACT_ACTOR = "extract_audio"
TRANSCRIBE_ACTOR = "transcribe_audio"
CHUNK_ACTOR = "transcribe_chunk"
NOTIFY_ACTOR = "notify_webhook"

ACTOR_QUEUES = {
    EXTRACT_ACTOR: EXTRACT_QUEUE,
    TRANSCRIBE_ACTOR: TRANSCRIBE_QUEUE,
    CHUNK_ACTOR: TRANSCRIBE_QUEUE,
    NOTIFY_ACTOR: NOTIFY_QUEUE,
}


def build_broker(settings: Settings) -> RabbitmqBroker:
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
    return RabbitmqBroker(url=settings.rabbitmq_url, middleware=middleware, confirm_delivery=True)


def send(broker: dramatiq.Broker, actor_name: str, task_id: str) -> dramatiq.Message[None]:
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=ACTOR_QUEUES[actor_name],
        actor_name=actor_name,
        args=(task_id,),
        kwargs={},
        options={},
    )
    return broker.enqueue(message)
