"""Dramatiq actors: thin wrappers that call a stage and send the next message.

Failure policy lives here, in one place: an error that retrying cannot fix ends the job as
``failed`` at once; any other error is re-raised so that Dramatiq retries it, and on the last
allowed attempt it ends the job as ``failed`` too, so that no job is left in a non-final state.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import CurrentMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded

from pipeline.errors import (
    JobCancelled,
    JobNotFound,
    PipelineError,
    TimeLimitReached,
    TranscriptionError,
    WorkerDied,
)
from pipeline.jobs import Job
from pipeline.logs import job_context
from pipeline.queues import (
    CHUNK_ACTOR,
    DIARIZE_ACTOR,
    DIARIZE_QUEUE,
    EXTRACT_ACTOR,
    EXTRACT_QUEUE,
    LIVE_ACTOR,
    LIVE_QUEUE,
    NOTIFY_ACTOR,
    NOTIFY_QUEUE,
    TRANSCRIBE_ACTOR,
    TRANSCRIBE_QUEUE,
)
from pipeline.uploads import remove_job_files
from pipeline.worker import reconciler, stages
from pipeline.worker.context import Context, worker_context

log = logging.getLogger(__name__)

Stage = Callable[[Context, str], stages.Next | None]
Retry = Callable[[int], object]  # sends the same message again, after a delay in ms
Fail = Callable[[Context, str, PipelineError], stages.Next | None]  # ends the job, or that part of it
# The lease extract and transcribe both hold, so that one job never runs both at once.
JOB_LEASE = ""
DIARIZE_LEASE = ":diarize"
LEASE_TTL_SECONDS = 30
LEASE_RECHECK_SECONDS = 10


def _last_attempt(ctx: Context) -> bool:
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return int(message.options.get("retries", 0)) >= ctx.settings.max_retries


def _attempt(ctx: Context, stage: Stage, name: str, task_id: str, fail: Fail = stages.fail) -> stages.Next | None:
    starts = ctx.jobs.count_attempt(task_id, name)
    if starts > ctx.settings.max_retries + 1:
        return fail(ctx, task_id, WorkerDied(
            f"The worker running this job stopped {starts - 1} times without finishing it "
            "(for example, killed for lack of memory); the job was given up."))
    try:
        return stage(ctx, task_id)
    except JobCancelled:
        log.info("job %s cancelled during %s", task_id, name)
        return None
    except TimeLimitExceeded:
        # Not retried: the same input would run out of time again.
        return fail(ctx, task_id, TimeLimitReached(
            f"The job ran longer than JOB_TIME_LIMIT_SECONDS ({ctx.settings.job_time_limit_seconds} s) "
            "and was stopped."))
    except PipelineError as exc:
        if exc.retryable and not _last_attempt(ctx):
            raise
        log.info("job %s failed in %s: %s", task_id, name, exc.message)
        return fail(ctx, task_id, exc)
    except Exception as exc:
        if not _last_attempt(ctx):
            raise
        log.exception("job %s failed in %s after its last retry", task_id, name)
        return fail(ctx, task_id, TranscriptionError(
            f"The job failed after {ctx.settings.max_retries + 1} attempts "
            f"({exc.__class__.__name__})."))


class _Lease:
    """Holds a job's lease while a stage runs, renewing it from a thread of its own (a long
    decode or transcription window can outlast the TTL between two callbacks)."""

    def __init__(self, ctx: Context, task_id: str, part: str = "") -> None:
        self.ctx, self.task_id, self.part, self.token = ctx, task_id, part, uuid.uuid4().hex
        self._stop = threading.Event()

    def take(self) -> bool:
        if not self.ctx.leases.take(self.task_id, self.token, LEASE_TTL_SECONDS, self.part):
            return False
        threading.Thread(target=self._renew, daemon=True, name=f"lease-{self.task_id[:8]}").start()
        return True

    def release(self) -> None:
        self._stop.set()
        self.ctx.leases.drop(self.task_id, self.token, self.part)

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_TTL_SECONDS / 3):
            try:
                self.ctx.leases.renew(self.task_id, self.token, LEASE_TTL_SECONDS, self.part)
            except Exception as exc:  # noqa: BLE001 - the next renewal may succeed
                log.warning("renewing the lease of %s failed: %s", self.task_id, exc)


def run_stage(stage: Stage, name: str, task_id: str, *, lease: str, retry: Retry,
              fail: Fail = stages.fail) -> None:
    """Run one stage of a job under the lease ``lease`` names (``JOB_LEASE``, or a scope of
    the stage's own), then send what the stage asks for next. ``retry(delay_ms)`` sends this
    same message again later; ``fail`` is called when the stage gives up."""
    ctx = worker_context()
    reconciler.touch(ctx.redis, task_id)  # the job is not lost: its message is here
    held = _Lease(ctx, task_id, lease)
    if not held.take():
        # Another delivery of this job is running right now. Look again later: by then it has
        # finished (and this message does nothing) or died (and its lease has lapsed).
        log.info("job %s is running elsewhere; %s checks again in %d s", task_id, name,
                 LEASE_RECHECK_SECONDS)
        retry(LEASE_RECHECK_SECONDS * 1000)
        return
    try:
        following = _attempt(ctx, stage, name, task_id, fail)
    except JobNotFound:
        # The record expired or was never written: nothing to do, nothing to retry.
        log.warning("job %s not found; message dropped", task_id)
        return
    finally:
        held.release()
        # Whoever ended the job (this stage, a cancellation, a twin message), its files go.
        job: Job | None
        try:
            job = ctx.jobs.get(task_id)
        except JobNotFound:
            job = None
        if job is not None and job.is_final:
            remove_job_files(ctx.storage, task_id)
    if following is not None and job is not None:
        FOLLOW_UP[following](job)


def _later(actor: dramatiq.Actor[..., None], *args: object) -> Retry:
    return lambda delay: actor.send_with_options(args=args, delay=delay)


@dramatiq.actor(actor_name=EXTRACT_ACTOR, queue_name=EXTRACT_QUEUE)
def extract_audio(task_id: str) -> None:
    with job_context(task_id):
        run_stage(stages.extract, "extract", task_id, lease=JOB_LEASE,
                  retry=_later(extract_audio, task_id))


@dramatiq.actor(actor_name=TRANSCRIBE_ACTOR, queue_name=TRANSCRIBE_QUEUE)
def transcribe_audio(task_id: str) -> None:
    with job_context(task_id):
        run_stage(stages.transcribe, "transcribe", task_id, lease=JOB_LEASE,
                  retry=_later(transcribe_audio, task_id))


@dramatiq.actor(actor_name=CHUNK_ACTOR, queue_name=TRANSCRIBE_QUEUE)
def transcribe_chunk(task_id: str, index: int) -> None:
    with job_context(task_id):
        # Each chunk holds a lease of its own, so that the chunks of one job run side by side.
        run_stage(functools.partial(stages.transcribe_chunk, index=index), f"chunk{index}", task_id,
                  lease=f":chunk{index}", retry=_later(transcribe_chunk, task_id, index))


@dramatiq.actor(actor_name=DIARIZE_ACTOR, queue_name=DIARIZE_QUEUE)
def diarize_audio(task_id: str) -> None:
    with job_context(task_id):
        # A lease of its own: it runs beside the transcription of the same job.
        run_stage(stages.diarize, "diarize", task_id, lease=DIARIZE_LEASE,
                  retry=_later(diarize_audio, task_id), fail=stages.diarize_failed)


@dramatiq.actor(actor_name=NOTIFY_ACTOR, queue_name=NOTIFY_QUEUE, max_retries=0)
def notify_webhook(task_id: str) -> None:
    with job_context(task_id):
        _notify(task_id)


# A session bounds itself (LIVE_SESSION_MAX_SECONDS of audio, the idle timeout, the client
# leaving); the time limit only catches a session thread that hangs.
LIVE_TIME_LIMIT_MS = 24 * 3600 * 1000


@dramatiq.actor(actor_name=LIVE_ACTOR, queue_name=LIVE_QUEUE, max_retries=0, time_limit=LIVE_TIME_LIMIT_MS)
def live_session(session_id: str) -> None:
    """Hold one realtime session to its end. Not retried: the API notices a worker that died
    (its lease lapses) and queues the session again, to go on from its committed turns."""
    from pipeline.live import LiveStore
    from pipeline.worker import live

    ctx = worker_context()
    outcome = live.serve(LiveStore(ctx.redis), session_id, live.faster_whisper_decoder(
        lambda model: live.engine_model(ctx, model)))
    log.info("live session %s: %s", session_id, outcome)


def _notify(task_id: str) -> None:
    # One attempt, through the outbox; a retry is the sweeper's (every worker runs one), not a
    # delayed message of ours: the due time lives in Redis, where no lost message strands it.
    stages.notify(worker_context(), task_id)


def _send_transcription(job: Job) -> None:
    transcribe_audio.send(job.task_id)
    _send_diarize(job)


def _send_chunks(job: Job) -> None:
    for index in range(len(job.chunks)):
        transcribe_chunk.send(job.task_id, index)
    _send_diarize(job)


def _send_diarize(job: Job) -> None:
    # Beside the transcription, not after it: a diarized job takes as long as the longer one.
    if job.options.diarize:
        diarize_audio.send(job.task_id)


def _send_notify(job: Job) -> None:
    if job.webhook_url:
        notify_webhook.send(job.task_id)


# What each answer of a stage sends next.
FOLLOW_UP: dict[stages.Next, Callable[[Job], object]] = {
    stages.Next.TRANSCRIBE: _send_transcription,
    stages.Next.CHUNKS: _send_chunks,
    stages.Next.NOTIFY: _send_notify,
}
