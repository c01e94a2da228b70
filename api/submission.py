"""Turning an incoming upload into a job, shared by the async, sync and OpenAI-style routes:
the request class whose multipart parser streams the uploaded file straight into storage, and
the job rules applied to what arrived.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import IO, Any, TypeVar, cast
from urllib.parse import urlsplit

import requests
from flask import Flask, Request, g, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from api.auth import client
from api.known_speakers import store_references
from api.state import ApiState, state
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

UPLOAD_TARGET = "whisper_pipeline.upload_target"
UPLOAD_WRITER = "whisper_pipeline.upload_writer"


class UploadRequest(Request):
    """The first file part goes into the store, through the sink the view's hook prepared
    (``UPLOAD_TARGET`` in the environ: a callable that opens it), hashed while it streams;
    Werkzeug's default would spool it to a temporary file first and the whole upload would be
    read twice.
    """

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        open_sink = self.environ.get(UPLOAD_TARGET)
        if open_sink is None or UPLOAD_WRITER in self.environ:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        writer: UploadSink = open_sink()
        self.environ[UPLOAD_WRITER] = writer
        return cast(IO[bytes], writer)

    def _get_stream_for_parsing(self) -> IO[bytes]:
        self._parts = PartTracker(super()._get_stream_for_parsing())
        return cast(IO[bytes], self._parts)

    def _load_form_data(self) -> None:
        """Werkzeug refuses a form field over ``max_form_memory_size`` with a bare 413, which
        read as if the whole upload were over MAX_UPLOAD_MB; this one names the field and its
        limit."""
        try:
            super()._load_form_data()
        except RequestEntityTooLarge:
            parts: PartTracker | None = getattr(self, "_parts", None)
            over_all = (self.max_content_length is not None and self.content_length is not None
                        and self.content_length > self.max_content_length)
            if parts is None or over_all:
                raise
            if self.max_form_parts is not None and parts.parts > self.max_form_parts:
                raise UploadTooLarge(f"The form has more than {self.max_form_parts} parts, more than "
                                     "this service reads.") from None
            if parts.name is not None and not parts.is_file and self.max_form_memory_size is not None:
                limit = self.max_form_memory_size
                raise UploadTooLarge(
                    f"The form field {parts.name[:64]!r} is larger than this service accepts "
                    f"({limit // 1000} kB a field; only the file may be large).", field=parts.name[:64]) from None
            raise


# A part's header as it passes: which field it is, and whether it is a file.
_DISPOSITION = re.compile(rb"content-disposition:[^\r\n]*", re.IGNORECASE)
_NAME = re.compile(rb';\s*name="([^"]*)"')
_TAIL = 4096  # longer than any part header a client sends; kept so a header split between reads is found


class PartTracker:
    """The request body as the form parser reads it, noting the last part header that went by:
    when the parser refuses a part as too large, that is the part, and its field is named."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.name: str | None = None
        self.is_file = False
        self.parts = 0
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        window = self._tail + data
        headers = _DISPOSITION.findall(window)
        # A header found again in the kept tail was counted at the last read.
        self.parts += len(headers) - len(_DISPOSITION.findall(self._tail))
        if headers:
            found = _NAME.search(headers[-1])
            self.name = found.group(1).decode("utf-8", "replace") if found else None
            self.is_file = b"filename" in headers[-1].lower()
        self._tail = window[-_TAIL:]
        return data


def upload_writer(request: Request) -> UploadSink | None:
    writer: UploadSink | None = request.environ.get(UPLOAD_WRITER)
    return writer


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
        st.jobs.complete(task_id, cached, cached=True)
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
