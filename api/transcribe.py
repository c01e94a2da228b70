"""Routes for submitting jobs, following them and downloading transcripts."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from api import views
from api.state import state
from api.submission import submit
from pipeline import queues
from pipeline.errors import (
    InvalidOption,
    JobConflict,
    JobNotFound,
    PipelineError,
    ResultNotReady,
    SyncTimeout,
)
from pipeline.formats import check_format, render
from pipeline.jobs import Job, Moved, State
from pipeline.uploads import remove_job_files

bp = Blueprint("transcribe", __name__, url_prefix="/api/transcribe")

# A stream ends on its own after this long; clients reconnect and get the state first.
EVENT_STREAM_SECONDS = 3600


def owner() -> str:
    """Who is asking: a hash of their API key when keys are set, else everyone is one owner."""
    return str(g.get("owner", ""))


def owned(job: Job) -> Job:
    # Another key's job answers exactly like one that does not exist.
    if job.owner != owner():
        raise JobNotFound(f"No job with id {job.task_id}.")
    return job


def _result_format(form: dict[str, str] | None = None, default: str = "json") -> str:
    # The form is read only once the upload has been stored: reading it earlier would make
    # Werkzeug spool the file elsewhere.
    name = request.args.get("format") or (form or {}).get("response_format") or default
    return check_format(name, "format")


def _answer_result(job: Job, fmt: str) -> Response:
    transcript = state().jobs.result(job.task_id)
    if transcript is None:
        raise ResultNotReady(f"The job is {job.status}; its transcript is not available.")
    body, content_type = render(transcript, fmt)
    response = Response(body, content_type=content_type)
    extension = {"text": "txt", "verbose_json": "json"}.get(fmt, fmt)
    response.headers["Content-Disposition"] = f'inline; filename="{job.task_id}.{extension}"'
    return response


def _failure(job: Job) -> PipelineError:
    """The error of a failed job, with the HTTP status its code maps to."""
    error = job.error or {}
    for cls in _subclasses(PipelineError):
        if cls.code == error.get("code"):
            return cls(error.get("message", "The job failed."))
    exc = PipelineError(error.get("message", "The job failed."))
    exc.code = error.get("code", "job_failed")
    return exc


def _subclasses(cls: type[PipelineError]) -> list[type[PipelineError]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


@bp.post("/async")
def submit_async() -> tuple[Response, int]:
    st = state()
    submitted = submit(request, st)
    return jsonify(views.accepted(submitted.job)), 202


@bp.post("")
def submit_sync() -> Response:
    st = state()
    check_format(request.args.get("format") or "json", "format")
    submitted = submit(request, st)
    fmt = _result_format(submitted.form)
    job = st.jobs.wait_final(submitted.job.task_id, st.settings.sync_timeout_seconds)
    if job.status == "completed":
        return _answer_result(job, fmt)
    if job.status == "failed":
        raise _failure(job)
    if job.is_final:
        raise ResultNotReady(f"The job was {job.status}.")
    raise SyncTimeout(
        f"The transcription did not finish within {st.settings.sync_timeout_seconds} s; it goes "
        f"on as job {job.task_id}: follow it at {views.accepted(job)['status_url']}"
    )


@bp.get("/async/status/<task_id>")
def status(task_id: str) -> Response:
    st = state()
    return jsonify(views.status(owned(st.jobs.get(task_id)), st.jobs))


@bp.get("/async/<task_id>/result")
def result(task_id: str) -> Response:
    st = state()
    job = owned(st.jobs.get(task_id))
    fmt = _result_format()
    if job.status != "completed":
        if job.status == "failed":
            message = (job.error or {}).get("message", "")
            raise ResultNotReady(f"The job failed: {message}")
        raise ResultNotReady(f"The job is {job.status}; the transcript is not ready yet.")
    return _answer_result(job, fmt)


@bp.delete("/async/<task_id>")
def cancel(task_id: str) -> tuple[Response, int]:
    st = state()
    job = owned(st.jobs.get(task_id))
    moved = st.jobs.cancel(task_id)
    if moved is not Moved.MOVED:
        job = st.jobs.get(task_id)
        raise JobConflict(f"The job is already {job.status}; there is nothing to cancel.")
    # The record says cancelled at once; a running worker sees the flag within one segment.
    remove_job_files(st.settings.upload_dir, task_id)
    if job.webhook_url:
        queues.send(st.broker, queues.NOTIFY_ACTOR, task_id)
    return jsonify({"task_id": task_id, "status": "cancelled"}), 202


@bp.get("/async")
def list_jobs() -> Response:
    st = state()
    status_filter = request.args.get("status") or None
    if status_filter is not None and status_filter not in {s.value for s in State}:
        raise InvalidOption(f"status must be one of {', '.join(s.value for s in State)}",
                            field="status")
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        raise InvalidOption("limit must be a whole number", field="limit") from None
    if not 1 <= limit <= 100:
        raise InvalidOption("limit must be between 1 and 100", field="limit")
    cursor = request.args.get("cursor") or None
    if cursor is not None:
        try:
            float(cursor)
        except ValueError:
            raise InvalidOption("cursor must be a value from next_cursor", field="cursor") from None
    jobs, next_cursor = st.jobs.list(owner=owner(), status=status_filter, limit=limit, cursor=cursor)
    return jsonify({
        "jobs": [views.summary(job) for job in jobs],
        "next_cursor": next_cursor,
    })


@bp.get("/async/<task_id>/events")
def events(task_id: str) -> Response:
    st = state()
    owned(st.jobs.get(task_id))  # 404 now, before the stream starts

    def stream() -> Iterator[str]:
        for event in st.jobs.events(task_id, timeout=EVENT_STREAM_SECONDS):
            if event is None:
                yield ": keep-alive\n\n"
                continue
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
        job = st.jobs.get(task_id)
        yield f"event: end\ndata: {json.dumps(views.summary(job))}\n\n"

    response = Response(stream_with_context(stream()), content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx must not hold the stream back
    return response
