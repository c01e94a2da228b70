"""Routes for submitting jobs, following them and downloading transcripts."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from flask import Response, g, request, stream_with_context

from api import schemas, serializers
from api.auth import client, is_admin, owner_of, require_admin
from api.blueprint import Blueprint
from api.events import job_events, wait_final
from api.state import state
from api.submission import streams_upload, submit
from api.validation import check_cursor, task_id_in_url
from pipeline import captions, outbox, queues, search, sentences
from pipeline.errors import (
    InvalidOption,
    JobConflict,
    JobNotFound,
    PipelineError,
    ResultNotReady,
    ResultOfFailedJob,
    SyncTimeout,
    error_for,
)
from pipeline.formats import FORMATS, render
from pipeline.jobs import Job, Moved
from pipeline.uploads import remove_job_files

log = logging.getLogger(__name__)

bp = Blueprint("transcribe", __name__, url_prefix="/api/transcribe",
               description="Submit recordings, follow jobs, download transcripts.")
bp.before_request(task_id_in_url)

# The transcript answers in several content types, which flask-smorest's response() cannot say.
TRANSCRIPT_RESPONSE = {"responses": {"200": {
    "description": "the transcript in the requested format (json by default)",
    "content": {
        content_type.split(";")[0]: {"schema": {"type": "string"}}
        for _, content_type in FORMATS.values() if not content_type.startswith("application/json")
    } | {"application/json": {"schema": {"type": "object"}}},
}}}
# Errors every job route can answer; the request-specific ones are added per route.
NOT_FOUND = {"description": "no such job (or another API key's)", "schema": schemas.Error}


def owner() -> str:
    """Who is asking: a hash of their API key when keys are set, else everyone is one owner."""
    return str(g.get("owner", ""))


def owned(job: Job) -> Job:
    # Another key's job answers exactly like one that does not exist; an admin sees every job.
    if job.owner != owner() and not is_admin():
        raise JobNotFound(f"No job with id {job.task_id}.")
    return job


def answer_result(job: Job, fmt: str, *, download: bool = False, chars_per_caption: int | None = None,
                  max_lines: int | None = None) -> Response:
    flow = captions.check(chars_per_caption, max_lines, fmt)
    transcript = state().jobs.result(job.task_id)
    if transcript is None:
        raise ResultNotReady(f"The job is {job.status}; its transcript is not available.")
    if fmt == "rttm" and not job.options.diarize:
        raise InvalidOption("format=rttm lists speakers: submit the recording with diarize=true.",
                            field="format")
    # Named after the recording (meeting.m4a -> meeting.srt), so a saved file says what it is.
    stem = PurePath(job.filename).stem if job.filename else job.task_id
    cues = None if flow is None else captions.reflow(transcript, *flow)
    body, content_type = render(transcript, fmt, file_id=stem, cues=cues)
    response = Response(body, content_type=content_type)
    extension = {"text": "txt", "verbose_json": "json"}.get(fmt, fmt)
    name = f"{stem}.{extension}"
    ascii_name = re.sub(r'[^A-Za-z0-9._-]+', "_", name) or f"{job.task_id}.{extension}"
    response.headers["Content-Disposition"] = (
        f'{"attachment" if download else "inline"}; filename="{ascii_name}"; '
        f"filename*=UTF-8''{quote(name)}")
    return response


def failure(job: Job) -> PipelineError:
    """The error of a failed job, with the HTTP status its code maps to."""
    error = job.error or {}
    return error_for(error.get("code"), error.get("message", "The job failed."))


def _submit_errors(func: Any) -> Any:
    for status, description in (
        (400, "no file, an empty file, or a webhook_url that is refused"),
        (413, "the upload is larger than MAX_UPLOAD_MB"),
        (415, "not audio or video that the service reads, or no audio track"),
        (422, "an unknown field or an invalid option, named in error.field; or media too long"),
        (503, "Redis or RabbitMQ is not answering"),
    ):
        func = bp.alt_response(status, schema=schemas.Error, description=description)(func)
    return func


@bp.post("/async")
@bp.arguments(schemas.TranscribeForm, location="form_and_files")
@bp.response(202, schemas.Accepted)
@_submit_errors
@streams_upload
def submit_async(form: dict[str, Any]) -> dict[str, Any]:
    """Queue a recording for transcription.

    Answers at once with the job's id and URLs. A recording already transcribed with the same
    options is answered from the cache: the job is born ``completed`` with ``cached: true``.
    """
    return serializers.accepted(submit(request, state(), form))


@bp.post("")
@bp.arguments(schemas.FormatQuery, location="query")
@bp.arguments(schemas.TranscribeForm, location="form_and_files")
@bp.doc(**TRANSCRIPT_RESPONSE)
@bp.alt_response(504, schema=schemas.Error, description="not done within SYNC_TIMEOUT_SECONDS; "
                 "the job goes on and the message names its status URL")
@_submit_errors
@streams_upload
def submit_sync(query: dict[str, Any], form: dict[str, Any]) -> Response:
    """Transcribe and wait: the same pipeline, answered with the transcript.

    The format is ``?format=`` or the ``response_format`` field (json by default). Waits up
    to SYNC_TIMEOUT_SECONDS; a job that fails answers with its error.
    """
    st = state()
    fmt = request.args.get("format") or form.get("response_format") or "json"
    # Checked before the job exists: a bad value leaves no job behind.
    captions.check(query.get("chars_per_caption"), query.get("max_lines"), fmt)
    submitted = submit(request, st, form)
    job = wait_final(st.hub, st.jobs, submitted.task_id, st.settings.sync_timeout_seconds)
    if job.status == "completed":
        return answer_result(job, fmt, chars_per_caption=query.get("chars_per_caption"),
                             max_lines=query.get("max_lines"))
    if job.status == "failed":
        raise failure(job)
    if job.is_final:
        raise ResultNotReady(f"The job was {job.status}.")
    raise SyncTimeout(
        f"The transcription did not finish within {st.settings.sync_timeout_seconds} s; it goes "
        f"on as job {job.task_id}: follow it at {serializers.accepted(job)['status_url']}"
    )


@bp.get("/async/status/<task_id>")
@bp.response(200, schemas.JobStatus)
@bp.alt_response(404, **NOT_FOUND)
def status(task_id: str) -> dict[str, Any]:
    """Where a job stands: state, stage, progress, and its transcript once completed."""
    st = state()
    return serializers.status(owned(st.jobs.get(task_id)), st.jobs)


@bp.get("/async/<task_id>/result")
@bp.arguments(schemas.ResultQuery, location="query")
@bp.doc(**TRANSCRIPT_RESPONSE)
@bp.alt_response(404, **NOT_FOUND)
@bp.alt_response(409, schema=schemas.Error, description="the job has no transcript (yet)")
def result(query: dict[str, Any], task_id: str) -> Response:
    """Download the transcript: json, verbose_json, text, srt, vtt, tsv, or rttm (diarized jobs).

    srt and vtt take ``chars_per_caption`` (and ``max_lines``) to re-flow the cues from the words."""
    job = finished(task_id)
    return answer_result(job, query["format"], download=query.get("download", False),
                         chars_per_caption=query.get("chars_per_caption"), max_lines=query.get("max_lines"))


def finished(task_id: str) -> Job:
    """The caller's completed job, or the error that says why it has no transcript."""
    job = owned(state().jobs.get(task_id))
    if job.status != "completed":
        if job.status == "failed":
            message = (job.error or {}).get("message", "")
            raise ResultOfFailedJob(f"The job failed: {message}")
        raise ResultNotReady(f"The job is {job.status}; the transcript is not ready yet.")
    return job


def finished_transcript(task_id: str) -> Any:
    transcript = state().jobs.result(finished(task_id).task_id)
    if transcript is None:
        raise ResultNotReady("The job's transcript is no longer available.")
    return transcript


NOT_READY = {"schema": schemas.Error, "description": "the job has no transcript (yet)"}


@bp.get("/async/<task_id>/sentences")
@bp.response(200, schemas.Sentences)
@bp.alt_response(404, **NOT_FOUND)
@bp.alt_response(409, **NOT_READY)
def sentences_view(task_id: str) -> dict[str, Any]:
    """The transcript in sentences, each with its time (and speaker, channel, words where known).

    No new inference: sentences end at ., ? and ! and where the speaker or channel changes."""
    return {"sentences": sentences.sentences(finished_transcript(task_id))}


@bp.get("/async/<task_id>/paragraphs")
@bp.response(200, schemas.Paragraphs)
@bp.alt_response(404, **NOT_FOUND)
@bp.alt_response(409, **NOT_READY)
def paragraphs_view(task_id: str) -> dict[str, Any]:
    """The transcript in paragraphs: sentences of one speaker (or channel) between pauses."""
    return {"paragraphs": sentences.paragraphs(finished_transcript(task_id))}


@bp.get("/async/<task_id>/search")
@bp.arguments(schemas.SearchQuery, location="query")
@bp.response(200, schemas.SearchOut)
@bp.alt_response(404, **NOT_FOUND)
@bp.alt_response(409, **NOT_READY)
@bp.alt_response(422, schema=schemas.Error, description="no words, or too many")
def search_view(query: dict[str, Any], task_id: str) -> dict[str, Any]:
    """Where words or phrases were said: each term's count and [start, end] of each time."""
    terms = search.parse_terms(query["words"])
    return {"matches": search.search(finished_transcript(task_id), terms)}


@bp.get("/async/<task_id>/redacted-audio")
@bp.doc(responses={"200": {"description": "16 kHz mono 16-bit WAV, a tone over each redacted span",
                           "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}})
@bp.alt_response(404, **NOT_FOUND)
@bp.alt_response(409, schema=schemas.Error, description="not finished, or submitted without redact_pii_audio=true")
def redacted_audio(task_id: str) -> Response:
    """The recording with its redacted spans toned out (jobs with ``redact_pii_audio=true``)."""
    job = finished(task_id)
    if not job.options.redact_pii_audio:
        raise ResultNotReady("The job was submitted without redact_pii_audio=true; it has no redacted audio.")
    wav = state().jobs.redacted_audio(task_id)
    if wav is None:
        raise ResultNotReady("The redacted audio is no longer available.")
    stem = PurePath(job.filename).stem if job.filename else job.task_id
    response = Response(wav, content_type="audio/wav")
    safe = re.sub(r'[^A-Za-z0-9._-]+', "_", f"{stem}.redacted.wav")
    response.headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    return response


@bp.delete("/async/<task_id>")
@bp.response(202, schemas.Cancelled)
@bp.alt_response(404, **NOT_FOUND)
@bp.alt_response(409, schema=schemas.Error, description="the job is already final")
def cancel(task_id: str) -> dict[str, Any]:
    """Cancel a job. A queued job never starts; a running one stops within one decoded segment."""
    st = state()
    job = owned(st.jobs.get(task_id))
    if st.jobs.cancel(task_id) is not Moved.MOVED:
        job = st.jobs.get(task_id)
        raise JobConflict(f"The job is already {job.status}; there is nothing to cancel.")
    # The worker removes the job's files when it sees the flag; a queued job has no worker yet.
    remove_job_files(st.storage, task_id)
    if job.webhook_url:
        queues.send(st.broker, queues.NOTIFY_ACTOR, task_id)
    return {"task_id": task_id, "status": "cancelled"}


@bp.post("/async/<task_id>/webhook")
@bp.response(202, schemas.WebhookOut)
@bp.alt_response(404, **NOT_FOUND)
@bp.alt_response(409, schema=schemas.Error, description="the job is not final yet, or has no webhook_url")
def redeliver_webhook(task_id: str) -> dict[str, Any]:
    """Deliver a finished job's webhook again: pending with a fresh schedule, attempted at once.

    Answers how delivery stands; follow it on the job's status (``webhook``)."""
    st = state()
    owned(st.jobs.get(task_id))
    job = outbox.redeliver(st, task_id)
    try:
        queues.send(st.broker, queues.NOTIFY_ACTOR, task_id)
    except Exception as exc:  # noqa: BLE001 - the outbox's sweeper delivers it anyway, a little later
        log.warning("job %s: notify message not sent (%s); the sweeper delivers the webhook", task_id, exc)
    return {"url": job.webhook_url, "state": job.webhook_state or "pending",
            "attempts": job.webhook_attempts, "last_status": job.webhook_last_status}


@bp.get("/async")
@bp.arguments(schemas.ListQuery, location="query")
@bp.response(200, schemas.JobList)
@bp.alt_response(403, schema=schemas.Error, description="all=true without an admin key")
def list_jobs(query: dict[str, Any]) -> dict[str, Any]:
    """The caller's jobs, newest first, ``limit`` at a time; pass ``next_cursor`` for more.

    ``all=true`` (admin keys only): every client's jobs."""
    cursor = check_cursor(query.get("cursor"))
    st = state()
    owners = [owner()]
    if query.get("all"):
        require_admin("list every client's jobs")
        # Each key's jobs are indexed apart (and, from when the service was open, the keyless
        # ones): the pages of every index, merged newest first.
        keys = {*st.settings.api_keys, *st.settings.admin_api_keys}
        owners = ["", *sorted(owner_of(key) for key in keys)]
    pages = [st.jobs.list(owner=o, status=query.get("status"), limit=query["limit"], cursor=cursor)
             for o in owners]
    merged = sorted((job for jobs, _ in pages for job in jobs), key=lambda j: j.created_at, reverse=True)
    shown = merged[:query["limit"]]
    more = len(merged) > len(shown) or any(next_cursor for _, next_cursor in pages)
    next_cursor = repr(shown[-1].created_at) if more and shown else None
    if len(owners) == 1:
        next_cursor = pages[0][1]  # the store's own cursor, unchanged for one index
    return {"jobs": [serializers.summary(job) for job in shown], "next_cursor": next_cursor}


@bp.get("/async/<task_id>/events")
@bp.doc(responses={"200": {
    "description": "Server-Sent Events: `status`, `segment` (as decoded), `progress` (diarization), then "
                   "`end` with the job's summary",
    # Each event (the schema describes one): a name and a JSON object in data.
    "content": {"text/event-stream": {"schema": {
        "type": "object", "required": ["event", "data"],
        "properties": {"event": {"type": "string", "enum": ["status", "segment", "progress", "end"]},
                       "data": {"type": "string", "description": "JSON"}}}}}}})
@bp.alt_response(404, **NOT_FOUND)
@bp.alt_response(429, schema=schemas.Error, description="MAX_OPEN_STREAMS_PER_CLIENT streams are open already")
def events(task_id: str) -> Response:
    """Follow a job live: its state first, then each change, progress and segment.

    The stream ends with ``end`` when the job is final, or after STREAM_MAX_SECONDS (the
    summary then shows a job still running: reconnect to go on). A client may hold
    MAX_OPEN_STREAMS_PER_CLIENT streams at once; one more is a 429."""
    st = state()
    owned(st.jobs.get(task_id))  # 404 now, before the stream starts
    who = client()
    slot = st.limits.open_stream(who)

    def stream() -> Iterator[str]:
        following = job_events(st.hub, st.jobs, task_id, max_seconds=st.settings.stream_max_seconds,
                               idle=st.settings.stream_keepalive_seconds)
        try:
            for event in st.limits.kept_open(who, slot, following):
                if event is None:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            job = st.jobs.get(task_id)
            yield f"event: end\ndata: {json.dumps(serializers.summary(job))}\n\n"
        finally:
            if slot is not None:
                st.limits.close_stream(who, slot)

    try:
        response = Response(stream_with_context(stream()), content_type="text/event-stream")
    except BaseException:
        if slot is not None:
            st.limits.close_stream(who, slot)
        raise
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx must not hold the stream back
    return response
