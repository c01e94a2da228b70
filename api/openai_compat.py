"""OpenAI-compatible audio endpoints, so that the official ``openai`` client (and tools built on
it) can use this service by changing only its base URL.

What is chosen here, where OpenAI's API has no equivalent:
- ``model``: ``whisper-1`` (what clients send by default) means this service's default model
  for transcriptions and the multilingual ``base`` for translations (an English-only model
  cannot translate); any other name must be one of this service's MODELS, as on every route.
- ``language`` in verbose_json is the language code (``en``), not OpenAI's English name.
- The request waits for the pipeline like ``POST /api/transcribe`` (SYNC_TIMEOUT_SECONDS).
- ``response_format=diarized_json`` (OpenAI's shape) diarizes whatever the model; speakers are
  named ``SPEAKER_00``, ``SPEAKER_01``, ... as in this service's other formats, not ``A``, ``B``.
  ``diarize``, ``min_speakers`` and ``max_speakers`` are accepted as on ``/api/transcribe``.
  ``known_speaker_names[]`` with ``known_speaker_references[]`` (files or data URLs) name the
  speakers that match a clip; the others keep ``SPEAKER_NN``.
- The transcript fields of ``/api/transcribe`` (``multichannel``, ``custom_spelling``,
  ``redact_pii`` and its options) are accepted too, as extra form fields (the ``openai``
  client's ``extra_body``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import marshmallow as ma
from flask import Response, request, stream_with_context
from flask_smorest.fields import Upload

from api import schemas
from api.auth import client
from api.blueprint import Blueprint
from api.events import job_events, wait_final
from api.state import ApiState, state
from api.submission import streams_upload, submit
from api.transcribe import failure
from pipeline.errors import InvalidOption, ResultNotReady, SyncTimeout
from pipeline.formats import render, to_diarized_json
from pipeline.jobs import Job, Moved
from pipeline.options import MAX_SPEAKERS
from pipeline.uploads import remove_job_files

log = logging.getLogger(__name__)

bp = Blueprint("openai", __name__, url_prefix="/v1",
               description="OpenAI-compatible transcription and translation.")

OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
DIARIZED_JSON = "diarized_json"  # transcriptions only, as at OpenAI
STREAM_FORMATS = ("json", "text")  # what OpenAI streams; the others are refused with stream=true


class OpenAIForm(schemas.Strict, schemas.TranscriptFields):
    file = Upload(required=True)
    model = ma.fields.String(load_default="whisper-1")
    prompt = ma.fields.String()
    response_format = ma.fields.String(load_default="json", validate=ma.validate.OneOf(OPENAI_FORMATS))
    temperature = schemas.Float(validate=ma.validate.Range(0, 1))
    hotwords = ma.fields.String(metadata={"description": schemas.HOTWORDS_HELP})
    timestamp_granularities = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(["word", "segment"])),
        data_key="timestamp_granularities[]", metadata={"description": "word and/or segment"})


class TranscriptionForm(OpenAIForm):
    language = ma.fields.String()
    response_format = ma.fields.String(load_default="json",
                                       validate=ma.validate.OneOf([*OPENAI_FORMATS, DIARIZED_JSON]))
    diarize = ma.fields.Boolean(metadata={"description": "label speakers (implied by diarized_json)"})
    min_speakers = schemas.Integer(validate=ma.validate.Range(1, MAX_SPEAKERS))
    max_speakers = schemas.Integer(validate=ma.validate.Range(1, MAX_SPEAKERS))
    known_speaker_names = schemas.KNOWN_NAMES()
    known_speaker_references = schemas.KNOWN_REFERENCES()
    stream = ma.fields.Boolean(load_default=False, metadata={
        "description": "answer Server-Sent Events (text/event-stream): transcript.text.delta as "
                       "segments are decoded, then transcript.text.done; json and text formats only"})


def _answer(form: dict[str, Any], task: str) -> Response:
    st = state()
    fmt = form["response_format"]
    stream = bool(form.pop("stream", False))
    if stream and fmt not in STREAM_FORMATS:
        raise InvalidOption(f"stream=true answers the json and text formats only, not {fmt!r}.",
                            field="response_format")
    granularities = form.pop("timestamp_granularities", None) or []
    model = form.pop("model")
    if model == "whisper-1":
        default = st.settings.default_model
        model = default if task == "transcribe" or not default.endswith(".en") else "base"
    ours: dict[str, Any] = {"model": model, "task": task, **form}
    if "word" in granularities:
        ours["word_timestamps"] = True
    if fmt == DIARIZED_JSON:
        ours["diarize"] = True
    if stream:
        # Taken before the job exists, so that a client over its limit leaves no job behind.
        who = client()
        slot = st.limits.open_stream(who)
        try:
            submitted = submit(request, st, ours, aliases={"prompt": "initial_prompt"})
        except BaseException:
            if slot is not None:
                st.limits.close_stream(who, slot)
            raise
        return _event_stream(st, submitted, who, slot)
    submitted = submit(request, st, ours, aliases={"prompt": "initial_prompt"})
    job = wait_final(st.hub, st.jobs, submitted.task_id, st.settings.sync_timeout_seconds)
    if job.status == "failed":
        raise failure(job)
    if job.status != "completed":
        if job.is_final:
            raise ResultNotReady(f"The job was {job.status}.")
        raise SyncTimeout(f"The transcription did not finish within {st.settings.sync_timeout_seconds} s.")
    transcript = st.jobs.result(job.task_id)
    if transcript is None:
        raise ResultNotReady("The transcript is not available.")
    if fmt == "json":
        return Response(json.dumps({"text": transcript.text}, ensure_ascii=False),
                        content_type="application/json")
    if fmt == DIARIZED_JSON:
        return Response(to_diarized_json(transcript), content_type="application/json")
    body, content_type = render(transcript, fmt)
    if fmt == "verbose_json" and "word" not in granularities:
        data = json.loads(body)
        data.pop("words", None)
        body = json.dumps(data, ensure_ascii=False)
    return Response(body, content_type=content_type)


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"


def _event_stream(st: ApiState, submitted: Job, who: str, slot: str | None) -> Response:
    """OpenAI's transcription stream, over the job's own events: a delta per segment as the
    worker decodes it, then the whole text. A cache hit has no segment events: its segments
    are sent at once from the stored transcript."""
    task_id = submitted.task_id

    def events() -> Iterator[str]:
        streamed = 0
        finished = False
        following = job_events(st.hub, st.jobs, task_id, max_seconds=st.settings.sync_timeout_seconds,
                               idle=st.settings.stream_keepalive_seconds)
        try:
            for event in st.limits.kept_open(who, slot, following):
                if event is None:
                    yield ": keep-alive\n\n"
                elif event.get("type") == "segment" and (text := event["segment"].get("text")):
                    yield _sse({"type": "transcript.text.delta", "delta": text.lstrip() if not streamed else text})
                    streamed += 1
            # Ended by the job or by the wait's bound: either way not by the client leaving.
            finished = True
            job = st.jobs.get(task_id)
            transcript = st.jobs.result(task_id) if job.status == "completed" else None
            if transcript is None:
                yield _sse({"type": "error", "error": _stream_error(job, st)})
                return
            if not streamed:
                for segment in transcript.segments:
                    if segment.text:
                        yield _sse({"type": "transcript.text.delta",
                                    "delta": segment.text.lstrip() if not streamed else segment.text})
                        streamed += 1
            yield _sse({"type": "transcript.text.done", "text": transcript.text})
        finally:
            if slot is not None:
                st.limits.close_stream(who, slot)
            if not finished:
                _cancel_abandoned(st, task_id)

    response = Response(stream_with_context(events()), content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _stream_error(job: Job, st: ApiState) -> dict[str, str]:
    if job.status == "failed":
        return failure(job).to_dict()
    if job.is_final:
        return ResultNotReady(f"The job was {job.status}.").to_dict()
    return SyncTimeout(f"The transcription did not finish within {st.settings.sync_timeout_seconds} s.").to_dict()


def _cancel_abandoned(st: ApiState, task_id: str) -> None:
    """The client went away before the transcript: nobody can read it (the stream names no
    job), so the job stops as a DELETE would stop it."""
    try:
        if st.jobs.cancel(task_id) is Moved.MOVED:
            remove_job_files(st.storage, task_id)
            log.info("job %s cancelled: its stream's client went away", task_id)
    except Exception:
        log.warning("job %s: could not cancel after its stream closed", task_id, exc_info=True)


_RESPONSES = {"responses": {"200": {
    "description": "json: {text}; verbose_json: task, language, duration, text, segments (and words "
    "when timestamp_granularities[] has word); diarized_json (transcriptions): task, duration, text, "
    "segments with speaker; text, srt, vtt as plain text",
    "content": {"application/json": {"schema": {"type": "object"}},
                "text/event-stream": {"schema": {
                    "type": "object", "description": "stream=true: each event's data is JSON, "
                    "{type: transcript.text.delta, delta} then {type: transcript.text.done, text}; "
                    "{type: error, error: {code, message}} when the job fails"}},
                "text/plain": {"schema": {"type": "string"}},
                "application/x-subrip": {"schema": {"type": "string"}},
                "text/vtt": {"schema": {"type": "string"}}},
}}}


def _errors(func: Any) -> Any:
    for status in (400, 413, 415, 422, 503, 504):
        func = bp.alt_response(status, schema=schemas.Error)(func)
    return func


@bp.post("/audio/transcriptions")
@bp.arguments(TranscriptionForm, location="form_and_files")
@bp.doc(**_RESPONSES)
@_errors
@streams_upload
def transcriptions(form: dict[str, Any]) -> Response:
    """Transcribe audio, as OpenAI's ``audio.transcriptions.create`` does."""
    return _answer(form, "transcribe")


@bp.post("/audio/translations")
@bp.arguments(OpenAIForm, location="form_and_files")
@bp.doc(**_RESPONSES)
@_errors
@streams_upload
def translations(form: dict[str, Any]) -> Response:
    """Translate audio into English, as OpenAI's ``audio.translations.create`` does."""
    return _answer(form, "translate")
