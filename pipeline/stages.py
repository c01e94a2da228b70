"""The pipeline's stages as plain functions. Actors call these; tests call them directly.

Each stage is idempotent under at-least-once delivery: it reads the job first and does
nothing for a job that is final or already past the stage, and a job caught half-way by a
dead worker is redone from the start of the stage.
"""

from __future__ import annotations

import json
import logging
import os
import time
from enum import Enum
from pathlib import Path

import numpy as np
import requests

from pipeline import chunks, webhooks
from pipeline.chunks import plan_chunks
from pipeline.context import Context
from pipeline.engines import choose_device
from pipeline.errors import JobCancelled, MediaDecodeError, PipelineError, TranscriptionError
from pipeline.gpu import is_out_of_memory, release_memory
from pipeline.jobs import Job, Moved, State
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.metrics import count_audio_seconds, count_webhook
from pipeline.transcript import Segment, Transcript
from pipeline.uploads import audio_path, remove_job_files

log = logging.getLogger(__name__)


CHUNK_ID_STRIDE = 1_000_000  # live segment ids: chunk index * stride + id within the chunk


class Next(Enum):
    TRANSCRIBE = "transcribe"
    CHUNKS = "chunks"  # a long recording: one transcribe message per chunk, in parallel
    NOTIFY = "notify"


def extract(ctx: Context, task_id: str) -> Next | None:
    """Decode the upload to 16 kHz mono float32 on disk, then look up the cache."""
    job = ctx.jobs.get(task_id)
    if ctx.jobs.transition(task_id, State.EXTRACTING) is Moved.REFUSED:
        log.info("job %s is %s; extract skipped", task_id, job.status)
        return None
    audio = decode_audio(Path(job.upload_path), max_duration=ctx.settings.max_duration_seconds)
    _stop_if_cancelled(ctx, task_id)
    target = audio_path(ctx.settings.upload_dir, task_id)
    # Written under a temporary name and renamed, so a redelivered message never reads half a file.
    partial = target.with_suffix(".partial.npy")
    np.save(partial, audio)
    os.replace(partial, target)
    duration = round(len(audio) / SAMPLE_RATE, 3)
    ctx.jobs.set_fields(task_id, audio_path=str(target), duration=duration, stage="cache-lookup")
    cached = ctx.cache.get(job.sha256, job.options)
    if cached is not None:
        return _complete(ctx, job, cached, cached_hit=True)
    long_audio = ctx.settings.long_audio_seconds
    if long_audio and duration > long_audio:
        plan = plan_chunks(audio, ctx.settings.chunk_seconds)
        if len(plan) > 1:
            log.info("job %s: %.0f s of audio in %d chunks", task_id, duration, len(plan))
            ctx.jobs.set_fields(task_id, chunks=json.dumps(plan), stage="waiting-for-transcriber")
            return Next.CHUNKS
    ctx.jobs.set_fields(task_id, stage="waiting-for-transcriber")
    return Next.TRANSCRIBE


def transcribe(ctx: Context, task_id: str) -> Next | None:
    job = ctx.jobs.get(task_id)
    choice = choose_device(ctx.settings)
    if ctx.jobs.transition(task_id, State.TRANSCRIBING, device=choice.device,
                           device_reason=choice.reason) is Moved.REFUSED:
        log.info("job %s is %s; transcribe skipped", task_id, job.status)
        return None
    # A twin upload may have finished while this one waited in the queue.
    cached = ctx.cache.get(job.sha256, job.options)
    if cached is None and not ctx.cache.claim(job.sha256, job.options, task_id):
        cached = _wait_for_twin(ctx, job)
    if cached is not None:
        return _complete(ctx, job, cached, cached_hit=True)
    try:
        transcript = _run_engine(ctx, job, choice.device)
        ctx.cache.put(job.sha256, job.options, transcript)
        count_audio_seconds(ctx.redis, transcript.duration)
    finally:
        ctx.cache.release(job.sha256, job.options, task_id)
        release_memory()
    return _complete(ctx, job, transcript, cached_hit=False)


def transcribe_chunk(ctx: Context, task_id: str, index: int) -> Next | None:
    """Transcribe chunk ``index`` of a long recording; the worker that stores the last chunk
    merges them and completes the job. A chunk redelivered after it was stored only checks
    whether the job can be completed, so a merge interrupted by a dead worker still happens."""
    job = ctx.jobs.get(task_id)
    choice = choose_device(ctx.settings)
    if ctx.jobs.transition(task_id, State.TRANSCRIBING, device=choice.device,
                           device_reason=choice.reason) is Moved.REFUSED:
        log.info("job %s is %s; chunk %d skipped", task_id, job.status, index)
        return None
    if not 0 <= index < len(job.chunks):
        raise TranscriptionError(f"Chunk {index} does not exist; the job has {len(job.chunks)}.")
    start, end = job.chunks[index]
    stored = len(ctx.jobs.chunks(task_id))
    if ctx.jobs.chunk(task_id, index) is None:
        audio = _decoded_audio(job)
        duration = max(len(audio) / SAMPLE_RATE, 1e-6)
        offset = start / SAMPLE_RATE
        last_end = [0.0]

        def on_segment(segment: Segment) -> None:
            _stop_if_cancelled(ctx, task_id)
            # Live segments carry ids unique across chunks; the merged result renumbers them.
            shown = chunks.shift(Transcript(text="", language="", duration=0.0, segments=(segment,)),
                                 offset, index * CHUNK_ID_STRIDE + segment.id)[0]
            decoded = ctx.jobs.add_decoded(task_id, max(0.0, segment.end - last_end[0]))
            last_end[0] = segment.end
            ctx.jobs.add_segment(task_id, shown, min(0.99, decoded / duration))

        part = np.asarray(audio[start:end])
        key = ctx.models.key_for(job.options, choice.device)
        transcript = ctx.models.get(key).transcribe(part, job.options, on_segment)
        stored = ctx.jobs.save_chunk(task_id, index, transcript)
        release_memory()
    if stored < len(job.chunks):
        return None
    parts = ctx.jobs.chunks(task_id)
    merged = chunks.merge([(job.chunks[i][0], t) for i, t in parts.items()],
                          duration=job.chunks[-1][1] / SAMPLE_RATE)
    if ctx.jobs.complete(task_id, merged, cached=False) is not Moved.MOVED:
        return None
    ctx.cache.put(job.sha256, job.options, merged)
    count_audio_seconds(ctx.redis, merged.duration)
    remove_job_files(ctx.settings.upload_dir, task_id)
    return Next.NOTIFY


def _wait_for_twin(ctx: Context, job: Job) -> Transcript | None:
    """Another job is transcribing the same input: wait for its result rather than redo it.

    Returns its transcript, or None once this job holds the claim itself (the twin failed,
    or died and its claim expired).
    """
    log.info("job %s waits for a twin transcribing the same input", job.task_id)
    while True:
        _stop_if_cancelled(ctx, job.task_id)
        found = ctx.cache.peek(job.sha256, job.options)
        if found is not None:
            return found
        if ctx.cache.claim(job.sha256, job.options, job.task_id):
            return None
        time.sleep(0.25)


def _decoded_audio(job: Job) -> np.ndarray:
    """The audio ``extract`` decoded, mapped rather than read: a chunk needs only its part."""
    try:
        audio: np.ndarray = np.load(job.audio_path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise MediaDecodeError("The decoded audio for this job is missing; upload the file again.") from exc
    return audio


def _run_engine(ctx: Context, job: Job, device: str) -> Transcript:
    task_id = job.task_id
    audio = _decoded_audio(job)
    duration = max(len(audio) / SAMPLE_RATE, 1e-6)

    def on_segment(segment: Segment) -> None:
        # Checked once per decoded segment: a cancelled job stops within one segment.
        _stop_if_cancelled(ctx, task_id)
        ctx.jobs.add_segment(task_id, segment, min(0.99, segment.end / duration))
        ctx.cache.renew(job.sha256, job.options)

    key = ctx.models.key_for(job.options, device)
    ctx.jobs.reset_segments(task_id)
    try:
        return ctx.models.get(key).transcribe(np.asarray(audio), job.options, on_segment)
    except Exception as exc:
        if device == "cpu" or not is_out_of_memory(exc):
            raise
    # Out of GPU memory: free what this process holds and finish the job on the CPU.
    log.warning("job %s ran out of GPU memory; retrying on the CPU", task_id)
    ctx.models.drop(key)
    ctx.jobs.set_fields(task_id, device="cpu", device_reason="CUDA out of memory; retried on the CPU")
    ctx.jobs.reset_segments(task_id)
    cpu_key = ctx.models.key_for(job.options, "cpu")
    return ctx.models.get(cpu_key).transcribe(np.asarray(audio), job.options, on_segment)


def _stop_if_cancelled(ctx: Context, task_id: str) -> None:
    if ctx.jobs.cancel_requested(task_id):
        raise JobCancelled("The job was cancelled.")


def _complete(ctx: Context, job: Job, transcript: Transcript, *, cached_hit: bool) -> Next | None:
    moved = ctx.jobs.complete(job.task_id, transcript, cached=cached_hit)
    remove_job_files(ctx.settings.upload_dir, job.task_id)
    return Next.NOTIFY if moved is Moved.MOVED else None


def fail(ctx: Context, task_id: str, error: PipelineError) -> Next | None:
    """End the job as ``failed`` with a reason a person can read."""
    moved = ctx.jobs.transition(task_id, State.FAILED, error=error.to_dict())
    # Other chunks of a long recording may still be running: they stop at their next segment.
    ctx.jobs.request_stop(task_id)
    remove_job_files(ctx.settings.upload_dir, task_id)
    return Next.NOTIFY if moved is Moved.MOVED else None


def notify(ctx: Context, task_id: str, http: requests.Session | None = None) -> int | None:
    """Deliver the job's final event to its webhook, if it has one.

    Returns the seconds to wait before the next attempt when this one failed in a way worth
    retrying, or None when there is nothing more to do. The job's state never changes here:
    only its ``webhook_*`` fields do.
    """
    job = ctx.jobs.get(task_id)
    if not job.webhook_url or not job.is_final or job.webhook_state in ("delivered", "failed"):
        return None
    summary = None
    if job.status is State.COMPLETED:
        result = ctx.jobs.result(task_id)
        if result is not None:
            summary = {
                "text": result.text[:500],
                "truncated": len(result.text) > 500,
                "language": result.language,
                "duration": result.duration,
                "segments": len(result.segments),
            }
    data = {
        "task_id": task_id,
        "status": job.status,
        "result_url": job.result_url if job.status is State.COMPLETED else None,
        "cached": job.cached,
        "error": job.error,
        "transcript": summary,
    }
    msg_id = webhooks.message_id(task_id, job.status)
    body = webhooks.event_body(f"transcription.{job.status}", data)
    headers = webhooks.signed_headers(ctx.settings.webhook_secret, msg_id, body)
    auth_name, auth_value = job.extra.get("webhook_auth_header_name"), job.extra.get(
        "webhook_auth_header_value")
    if auth_name and auth_value:
        headers[auth_name] = auth_value
    http = http or webhooks.session(allow_private=ctx.settings.webhook_allow_private)
    delivery = webhooks.deliver(http, job.webhook_url, body, headers)
    attempts = job.webhook_attempts + 1
    retry = delivery.retryable and attempts < ctx.settings.webhook_max_attempts
    state = "delivered" if delivery.delivered else ("pending" if retry else "failed")
    count_webhook(ctx.redis, "retrying" if state == "pending" else state)
    log.info("webhook for %s: attempt %d, %s -> %s", task_id, attempts, delivery.detail, state)
    ctx.jobs.set_fields(
        task_id,
        webhook_attempts=attempts,
        webhook_last_status=delivery.status,
        webhook_state=state,
        webhook_last_error="" if delivery.delivered else delivery.detail,
    )
    return webhooks.backoff_seconds(attempts) if retry else None
