"""Dramatiq actors: thin wrappers that call a stage and send the next message.

Failure policy lives here, in one place: an error that retrying cannot fix ends the job as
``failed`` at once; any other error is re-raised so that Dramatiq retries it, and on the last
allowed attempt it ends the job as ``failed`` too, so that no job is left in a non-final state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import CurrentMessage

from pipeline import stages
from pipeline.context import Context, worker_context
from pipeline.errors import JobNotFound, PipelineError, TranscriptionError
from pipeline.queues import (
    EXTRACT_ACTOR,
    EXTRACT_QUEUE,
    NOTIFY_ACTOR,
    NOTIFY_QUEUE,
    TRANSCRIBE_ACTOR,
    TRANSCRIBE_QUEUE,
)

log = logging.getLogger(__name__)


def _last_attempt(ctx: Context) -> bool:
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return int(message.options.get("retries", 0)) >= ctx.settings.max_retries


def run_stage(stage: Callable[[Context, str], stages.Next | None], task_id: str) -> None:
    ctx = worker_context()
    try:
        following = stage(ctx, task_id)
    except JobNotFound:
        # The record expired or was never written: nothing to do, nothing to retry.
        log.warning("job %s not found; message dropped", task_id)
        return
    except PipelineError as exc:
        if exc.retryable and not _last_attempt(ctx):
            raise
        log.info("job %s failed: %s", task_id, exc.message)
        following = stages.fail(ctx, task_id, exc)
    except Exception as exc:
        if not _last_attempt(ctx):
            raise
        log.exception("job %s failed after its last retry", task_id)
        following = stages.fail(ctx, task_id, TranscriptionError(
            f"The job failed after {ctx.settings.max_retries + 1} attempts: {exc.__class__.__name__}"
        ))
    if following is stages.Next.TRANSCRIBE:
        transcribe_audio.send(task_id)
    elif following is stages.Next.NOTIFY:
        notify_webhook.send(task_id)


@dramatiq.actor(actor_name=EXTRACT_ACTOR, queue_name=EXTRACT_QUEUE)
def extract_audio(task_id: str) -> None:
    run_stage(stages.extract, task_id)


@dramatiq.actor(actor_name=TRANSCRIBE_ACTOR, queue_name=TRANSCRIBE_QUEUE)
def transcribe_audio(task_id: str) -> None:
    run_stage(stages.transcribe, task_id)


@dramatiq.actor(actor_name=NOTIFY_ACTOR, queue_name=NOTIFY_QUEUE)
def notify_webhook(task_id: str) -> None:
    ctx = worker_context()
    try:
        stages.notify(ctx, task_id)
    except JobNotFound:
        log.warning("job %s not found; webhook skipped", task_id)
