"""JSON views of jobs: the only place where a ``Job`` becomes a dict for a client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.urls import service_url
from pipeline.jobs import Job, JobStore


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def accepted(job: Job) -> dict[str, Any]:
    return {
        "task_id": job.task_id,
        "status": job.status,
        "cached": job.cached,
        "status_url": service_url("transcribe.status", task_id=job.task_id),
        "result_url": service_url("transcribe.result", task_id=job.task_id),
    }


def summary(job: Job) -> dict[str, Any]:
    """A job in a list: what a client needs to pick it out, without its transcript."""
    return {
        "task_id": job.task_id,
        "status": job.status,
        "stage": job.stage,
        "progress": round(job.progress, 4),
        "cached": job.cached,
        "filename": job.filename,
        "engine": job.options.engine,
        "model": job.options.model,
        "language": job.language or job.options.language,
        "duration": job.duration,
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
        "error": job.error,
        **({"warnings": job.warnings} if job.warnings else {}),
        "status_url": service_url("transcribe.status", task_id=job.task_id),
        "result_url": service_url("transcribe.result", task_id=job.task_id),
        **redacted_audio(job),
    }


def redacted_audio(job: Job) -> dict[str, Any]:
    if job.status != "completed" or not job.options.redact_pii_audio:
        return {}
    return {"redacted_audio_url": service_url("transcribe.redacted_audio", task_id=job.task_id)}


def status(job: Job, jobs: JobStore) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_id": job.task_id,
        "status": job.status,
        "stage": job.stage,
        "progress": round(job.progress, 4),
        "cached": job.cached,
        "device": job.device,
        "device_reason": job.device_reason,
        "engine": job.options.engine,
        "model": job.options.model,
        "language": job.language or job.options.language,
        "language_probability": job.language_probability,
        "duration": job.duration,
        "filename": job.filename,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "error": job.error,
        "chunks": len(job.chunks) or None,
        **({"warnings": job.warnings} if job.warnings else {}),
        "webhook": {
            "url": job.webhook_url,
            "state": job.webhook_state or "pending",
            "attempts": job.webhook_attempts,
            "last_status": job.webhook_last_status,
        } if job.webhook_url else None,
        "status_url": service_url("transcribe.status", task_id=job.task_id),
        "result_url": service_url("transcribe.result", task_id=job.task_id),
        **redacted_audio(job),
    }
    if job.status == "queued":
        body["queue_position"] = jobs.queue_position(job.task_id)
    if job.status == "transcribing":
        # Chunks of a long recording are decoded in parallel: show them in time order.
        body["segments"] = [
            {"id": s.id, "start": s.start, "end": s.end, "text": s.text}
            for s in sorted(jobs.segments(job.task_id), key=lambda s: s.start)
        ]
    if job.status == "completed":
        result = jobs.result(job.task_id)
        if result is not None:
            body["result"] = {
                "text": result.text,
                "language": result.language,
                "duration": result.duration,
                "segments": [
                    {"id": s.id, "start": s.start, "end": s.end, "text": s.text,
                     **({"speaker": s.speaker} if s.speaker is not None else {}),
                     **({"channel": s.channel} if s.channel is not None else {})}
                    for s in result.segments
                ],
                **({"speakers": [sp.to_dict() for sp in result.speakers]} if result.speakers else {}),
                **({"channels": list(result.channels)} if result.channels else {}),
                **({"redactions": [r.to_dict() for r in result.redactions]} if result.redactions else {}),
                **({"warnings": list(result.warnings)} if result.warnings else {}),
            }
    return body
