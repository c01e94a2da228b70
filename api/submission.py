"""Turning an incoming upload into a job: shared by the async, sync and OpenAI-style routes."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from flask import Flask, Request, g, request
from werkzeug.datastructures import FileStorage

from api.auth import client
from api.known_speakers import store_references
from api.state import ApiState, state
from api.uploads import UPLOAD_TARGET, upload_writer
from api.urls import service_url
from pipeline import media, queues, webhooks
from pipeline.cache import scoped
from pipeline.errors import (
    BadRequest,
    DependencyUnavailable,
    FetchTimeout,
    InvalidOption,
    MediaTooLong,
    UploadTooLarge,
)
from pipeline.jobs import Job, State, new_task_id
from pipeline.options import MAX_CHANNELS, TranscribeOptions, is_ascii_number
from pipeline.uploads import UploadSink, remove_job_files

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
WEBHOOK_FIELDS = ("webhook_url", "webhook_auth_header_name", "webhook_auth_header_value")


def streams_upload(view: F) -> F:
    """Mark a view whose upload streams straight into storage under a fresh task id.

    The target must be known before anything reads the request body, which flask-smorest's
    argument parsing does before the view runs; so it is set in a ``before_request`` hook.
    """
    view.streams_upload = True  # type: ignore[attr-defined]
    return view


def init_uploads(app: Flask) -> None:
    @app.before_request
    def choose_upload_target() -> None:
        view = app.view_functions.get(request.endpoint or "")
        if view is None or not getattr(view, "streams_upload", False):
            return
        st = state()
        who = client()
        task_id = new_task_id()
        # Before a byte of the body is read: a refused client's upload never reaches the disk.
        st.limits.check_audio_left(who)
        if st.limits.reserve_job(who, task_id):
            g.job_reserved = who
        g.upload_task_id = task_id
        # Opened by the multipart parser when the file part begins (pipeline.uploads).
        request.environ[UPLOAD_TARGET] = functools.partial(UploadSink, st.storage, task_id,
                                                           st.settings.scratch_dir)

    @app.teardown_request
    def drop_unused_upload(exc: BaseException | None) -> None:
        # An upload that did not become a job (refused, invalid, failed) leaves nothing behind,
        # and takes nothing from its client's limits.
        task_id = g.get("upload_task_id")
        sink = upload_writer(request) or g.get("fetched_upload")
        if sink is not None:
            sink.drop_copy()  # the probe's local copy, kept job or not
        if not task_id or g.get("upload_kept"):
            return
        st = state()
        if sink is not None and not sink.closed:
            sink.abort()
        remove_job_files(st.storage, task_id)
        if (who := g.get("job_reserved")) is not None:
            st.limits.release_job(who, task_id)
        if (charge := g.get("audio_charge")) is not None:
            st.limits.refund_audio(charge)


def submit(req: Request, st: ApiState, form: dict[str, Any], *,
           aliases: dict[str, str] | None = None) -> Job:
    """Create the job for the stored upload and queue it, or answer it from the cache.

    ``form`` holds the validated form fields; ``aliases`` renames fields of other APIs
    (OpenAI's ``prompt`` is our ``initial_prompt``)."""
    task_id: str = g.upload_task_id
    if req.files.get("file") is None and form.get("url"):
        writer = fetch(str(form["url"]), UploadSink(st.storage, task_id, st.settings.scratch_dir), st)
        filename = PurePosixPath(urlsplit(str(form["url"])).path).name
    else:
        uploaded = upload_writer(req)
        if uploaded is None or req.files.get("file") is None or req.files["file"].stream is not uploaded:
            raise BadRequest("No file was sent: attach the recording as the multipart field 'file', "
                             "or give its address as 'url'.", field="file")
        writer, filename = uploaded, req.files["file"].filename or ""
    writer.close()
    option_form = {(aliases or {}).get(k, k): v for k, v in form.items()
                   if k not in (*WEBHOOK_FIELDS, "response_format", "file", "url", "known_speaker_references")}
    references = list(form.get("known_speaker_references") or [])
    if references or "known_speaker_names" in form:
        if any(isinstance(r, FileStorage) and r.stream is writer for r in references):
            raise BadRequest("Send the recording's 'file' part before known_speaker_references[].",
                             field="known_speaker_references")
        names = list(form.get("known_speaker_names") or [])
        if len(names) != len(references):
            raise InvalidOption(f"known_speaker_names[] and known_speaker_references[] must pair up: "
                                f"{len(names)} names, {len(references)} references.",
                                field="known_speaker_references")
        option_form["known_speaker_digests"] = store_references(
            st.storage, task_id, references, st.settings.scratch_dir)
    options = TranscribeOptions.parse(option_form, st.settings)
    webhook = _webhook_fields(form, st)
    if writer.size == 0:
        raise BadRequest("The uploaded file is empty.", field="file")

    scope = str(g.get("owner", "")) if st.settings.cache_per_client else ""
    fields = {
        "sha256": writer.sha256,
        "filename": filename[:255],
        "upload_path": f"{st.storage.url}/{writer.key}",
        **webhook,
        "result_url": service_url("transcribe.result", task_id=task_id),
        "size": writer.size,
        "owner": str(g.get("owner", "")),
        "cache_scope": scope,
    }
    # A job that keeps redacted audio needs the audio decoded: its cache hit is the extract
    # stage's, which has it.
    cached = None if options.redact_pii_audio else st.cache.get(scoped(writer.sha256, scope), options)
    if cached is not None:
        # Answered here, without a broker hop: the job is born completed.
        st.jobs.create(task_id, options, **fields)
        st.jobs.transition(
            task_id, State.COMPLETED, result=cached, cached=True, language=cached.language,
            language_probability=cached.language_probability, duration=cached.duration,
        )
        if webhook:
            queues.send(st.broker, queues.NOTIFY_ACTOR, task_id)
        return st.jobs.get(task_id)

    # Reading the header here turns most non-media uploads into an immediate 415, and a
    # recording whose header already says it is too long into an immediate 422.
    info = media.probe(writer.local_path)
    limit = st.settings.max_duration_seconds
    if info.duration is not None and info.duration > limit:
        raise MediaTooLong(f"The recording is {info.duration:.0f} s long; this service accepts at "
                           f"most {limit} s (MAX_DURATION_SECONDS).", field="file")
    if options.multichannel and info.channels > MAX_CHANNELS:
        raise InvalidOption(f"The recording has {info.channels} channels; multichannel transcribes at most "
                            f"{MAX_CHANNELS}.", field="multichannel")
    if info.duration is not None:
        g.audio_charge = st.limits.charge_audio(client(), info.duration)
    job = st.jobs.create(task_id, options, **fields)
    g.upload_kept = True
    try:
        queues.send(st.broker, queues.EXTRACT_ACTOR, task_id)
    except Exception as exc:
        log.exception("could not queue job %s", task_id)
        st.jobs.transition(task_id, State.FAILED, error={
            "code": "dependency_unavailable", "message": "The job could not be queued."})
        remove_job_files(st.storage, task_id)
        raise DependencyUnavailable(
            f"The job could not be queued (it is recorded as failed: {task_id}); try again shortly.") from exc
    return job


def _webhook_fields(form: dict[str, Any], st: ApiState) -> dict[str, str]:
    url = str(form.get("webhook_url", "")).strip()
    name = str(form.get("webhook_auth_header_name", "")).strip()
    value = str(form.get("webhook_auth_header_value", ""))
    if not url:
        if name or value:
            raise InvalidOption("webhook_auth_header_* need a webhook_url.", field="webhook_url")
        return {}
    webhooks.check_url(url, allow_private=st.settings.webhook_allow_private)
    fields = {"webhook_url": url, "webhook_state": "pending"}
    if name or value:
        if not (name and value):
            raise InvalidOption("Give both webhook_auth_header_name and webhook_auth_header_value.",
                                field="webhook_auth_header_name")
        webhooks.check_auth_header(name, value)
        fields |= {"webhook_auth_header_name": name, "webhook_auth_header_value": value}
    return fields


def fetch(url: str, writer: UploadSink, st: ApiState) -> UploadSink:
    """Download a recording given by address into ``writer`` (the upload's place), behind the same guards as
    webhooks: no internal addresses (checked at every redirect, connecting to the address that
    was checked), MAX_UPLOAD_MB, and FETCH_TIMEOUT_SECONDS for the whole download.

    A per-read timeout alone would let a server that sends a byte a minute hold the request for
    ever. Under gunicorn's gevent worker the deadline interrupts whatever is waiting (the
    address lookup, the connection, a read); elsewhere it is checked between reads, each read
    allowed no more than what is left."""
    webhooks.check_url(url, allow_private=st.settings.webhook_allow_private, field="url")
    limit = st.settings.max_upload_mb * 2**20
    allowed = st.settings.fetch_timeout_seconds
    deadline = time.monotonic() + allowed
    too_slow = FetchTimeout(f"The file at url did not arrive within {allowed} s (FETCH_TIMEOUT_SECONDS).",
                            field="url")
    g.fetched_upload = writer  # for the teardown, whatever happens below
    http = webhooks.session(allow_private=st.settings.webhook_allow_private, follow_redirects=True)
    try:
        with cooperative_deadline(allowed, too_slow), \
                http.get(url, stream=True, timeout=(min(10, allowed), min(60, allowed))) as response:
            if response.status_code != 200:
                raise BadRequest(f"Fetching url answered HTTP {response.status_code}.", field="url")
            length = response.headers.get("Content-Length") or "0"
            # The remote server's word, held to ASCII digits like a client's (int() takes more).
            declared = int(length) if is_ascii_number(length, integer=True) else 0
            if declared > limit:
                raise UploadTooLarge(f"The file at url is larger than this service accepts "
                                     f"({st.settings.max_upload_mb} MB).", field="url")
            for chunk in response.iter_content(1 << 16):
                writer.write(chunk)
                if writer.size > limit:
                    raise UploadTooLarge(f"The file at url is larger than this service accepts "
                                         f"({st.settings.max_upload_mb} MB).", field="url")
                if time.monotonic() > deadline:
                    raise too_slow
    except requests.RequestException as exc:
        if time.monotonic() > deadline:
            raise too_slow from exc
        raise BadRequest(f"The file at url could not be fetched ({exc.__class__.__name__}).",
                         field="url") from exc
    except BaseException:
        writer.abort()
        raise
    return writer


@contextlib.contextmanager
def cooperative_deadline(seconds: float, error: Exception) -> Iterator[None]:
    """Raise ``error`` in this greenlet after ``seconds``, wherever it waits; nothing where
    sockets are not gevent's (a thread cannot be interrupted that way)."""
    if "gevent" not in sys.modules:
        yield
        return
    from gevent import Timeout, monkey

    if not monkey.is_module_patched("socket"):
        yield
        return
    with Timeout(seconds, error):
        yield
