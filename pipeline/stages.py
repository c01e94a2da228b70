"""The pipeline's stages as plain functions. Actors call these; tests call them directly.

Each stage is idempotent under at-least-once delivery: it reads the job first and does
nothing for a job that is final or already past the stage, and a job caught half-way by a
dead worker is redone from the start of the stage.
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path

import numpy as np
import requests

from pipeline.context import Context
from pipeline.engines import choose_device
from pipeline.errors import MediaDecodeError, PipelineError
from pipeline.jobs import Job, Moved, State
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.transcript import Segment, Transcript
from pipeline.uploads import audio_path, remove_job_files

log = logging.getLogger(__name__)


class Next(Enum):
    TRANSCRIBE = "transcribe"
    NOTIFY = "notify"


def extract(ctx: Context, task_id: str) -> Next | None:
    """Decode the upload to 16 kHz mono float32 on disk, then look up the cache."""
    job = ctx.jobs.get(task_id)
    if ctx.jobs.transition(task_id, State.EXTRACTING) is Moved.REFUSED:
        log.info("job %s is %s; extract skipped", task_id, job.status)
        return None
    audio = decode_audio(Path(job.upload_path), max_duration=ctx.settings.max_duration_seconds)
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
    return Next.TRANSCRIBE


def transcribe(ctx: Context, task_id: str) -> Next | None:
    job = ctx.jobs.get(task_id)
    device = choose_device(ctx.settings)
    if ctx.jobs.transition(task_id, State.TRANSCRIBING, device=device) is Moved.REFUSED:
        log.info("job %s is %s; transcribe skipped", task_id, job.status)
        return None
    # A twin upload may have finished while this one waited in the queue.
    cached = ctx.cache.get(job.sha256, job.options)
    if cached is not None:
        return _complete(ctx, job, cached, cached_hit=True)
    try:
        audio = np.load(job.audio_path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise MediaDecodeError("The decoded audio for this job is missing; upload the file again.") from exc
    duration = max(len(audio) / SAMPLE_RATE, 1e-6)
    engine = ctx.models.get(ctx.models.key_for(job.options, device))
    ctx.jobs.reset_segments(task_id)

    def on_segment(segment: Segment) -> None:
        ctx.jobs.add_segment(task_id, segment, min(0.99, segment.end / duration))

    transcript = engine.transcribe(np.asarray(audio), job.options, on_segment)
    ctx.cache.put(job.sha256, job.options, transcript)
    return _complete(ctx, job, transcript, cached_hit=False)


def _complete(ctx: Context, job: Job, transcript: Transcript, *, cached_hit: bool) -> Next | None:
    moved = ctx.jobs.transition(
        job.task_id,
        State.COMPLETED,
        result=transcript,
        cached=cached_hit,
        language=transcript.language,
        language_probability=transcript.language_probability,
        duration=transcript.duration,
        device=transcript.device if not cached_hit else None,
    )
    remove_job_files(ctx.settings.upload_dir, job.task_id)
    return Next.NOTIFY if moved is Moved.MOVED else None


def fail(ctx: Context, task_id: str, error: PipelineError) -> Next | None:
    """End the job as ``failed`` with a reason a person can read."""
    moved = ctx.jobs.transition(task_id, State.FAILED, error=error.to_dict())
    remove_job_files(ctx.settings.upload_dir, task_id)
    return Next.NOTIFY if moved is Moved.MOVED else None


def notify(ctx: Context, task_id: str, session: requests.Session | None = None) -> None:
    """Tell the job's webhook receiver, if it has one, that the job is final."""
    job = ctx.jobs.get(task_id)
    if not job.webhook_url or not job.is_final or job.webhook_state == "delivered":
        return
    payload = {
        "type": f"transcription.{job.status}",
        "task_id": task_id,
        "status": job.status,
        "result_url": job.result_url if job.status == "completed" else None,
        "error": job.error,
    }
    http = session or requests.Session()
    attempts = job.webhook_attempts + 1
    try:
        response = http.post(job.webhook_url, json=payload, timeout=10, allow_redirects=False)
        status: int | None = response.status_code
        delivered = 200 <= response.status_code < 300
    except requests.RequestException as exc:
        log.warning("webhook for %s failed: %s", task_id, exc)
        status, delivered = None, False
    ctx.jobs.set_fields(
        task_id,
        webhook_attempts=attempts,
        webhook_last_status=status,
        webhook_state="delivered" if delivered else "failed",
    )
