"""Turning an incoming upload into a job: shared by the async, sync and OpenAI-style routes."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from flask import Request, g, url_for

from api.state import ApiState
from api.uploads import UPLOAD_TARGET, upload_writer
from pipeline import media, queues, webhooks
from pipeline.errors import BadRequest, DependencyUnavailable, InvalidOption, MediaTooLong
from pipeline.formats import check_format
from pipeline.jobs import Job, State, new_task_id
from pipeline.options import OPTION_FIELDS, TranscribeOptions
from pipeline.uploads import remove_job_files, upload_path

log = logging.getLogger(__name__)

WEBHOOK_FIELDS = ("webhook_url", "webhook_auth_header_name", "webhook_auth_header_value")
SUBMIT_FIELDS = frozenset({*OPTION_FIELDS, *WEBHOOK_FIELDS, "response_format"})


@dataclass(frozen=True)
class Submitted:
    job: Job
    form: dict[str, str]


def submit(
    request: Request, st: ApiState, *, allowed_fields: Iterable[str] = SUBMIT_FIELDS,
    option_aliases: dict[str, str] | None = None,
) -> Submitted:
    """Store the upload, create the job and queue it (or answer it from the cache)."""
    task_id = new_task_id()
    target = upload_path(st.settings.upload_dir, task_id)
    request.environ[UPLOAD_TARGET] = target
    try:
        return _submit(request, st, task_id, set(allowed_fields), option_aliases or {})
    except BaseException:
        remove_job_files(st.settings.upload_dir, task_id)
        raise


def _submit(
    request: Request, st: ApiState, task_id: str, allowed: set[str], aliases: dict[str, str]
) -> Submitted:
    files = request.files  # parsing streams the file to its place
    form = {k: v for k, v in request.form.items()}
    if "file" not in files:
        if "url" in form:
            raise BadRequest("Uploading by url is not supported yet; send the file itself.", field="url")
        raise BadRequest("No file was sent: attach the recording as the multipart field 'file'.",
                         field="file")
    writer = upload_writer(request)
    if writer is None or files["file"].stream is not writer:
        raise BadRequest("Send exactly one file, in the multipart field named 'file'.", field="file")
    writer.close()
    for extra in files:
        if extra != "file":
            raise InvalidOption(f"Unknown file field {extra!r}; only 'file' is read.", field=extra)
    for name in form:
        if name not in allowed:
            raise InvalidOption(f"Unknown field {name!r}.", field=name)
    option_form = {aliases.get(k, k): v for k, v in form.items()}
    options = TranscribeOptions.parse(option_form, st.settings)
    if "response_format" in form:
        check_format(form["response_format"], "response_format")
    webhook = _webhook_fields(form, st)
    if writer.size == 0:
        raise BadRequest("The uploaded file is empty.", field="file")

    fields = {
        "sha256": writer.sha256,
        "filename": (files["file"].filename or "")[:255],
        "upload_path": str(writer.path),
        **webhook,
        "result_url": url_for("transcribe.result", task_id=task_id, _external=True),
        "size": writer.size,
        "owner": str(g.get("owner", "")),
    }
    cached = st.cache.get(writer.sha256, options)
    if cached is not None:
        # Answered here, without a broker hop: the job is born completed.
        st.jobs.create(task_id, options, **fields)
        st.jobs.transition(
            task_id, State.COMPLETED, result=cached, cached=True, language=cached.language,
            language_probability=cached.language_probability, duration=cached.duration,
        )
        remove_job_files(st.settings.upload_dir, task_id)
        if webhook:
            queues.send(st.broker, queues.NOTIFY_ACTOR, task_id)
        return Submitted(st.jobs.get(task_id), form)

    # Reading the header here turns most non-media uploads into an immediate 415, and a
    # recording whose header already says it is too long into an immediate 422.
    info = media.probe(writer.path)
    limit = st.settings.max_duration_seconds
    if info.duration is not None and info.duration > limit:
        raise MediaTooLong(f"The recording is {info.duration:.0f} s long; this service accepts at "
                           f"most {limit} s (MAX_DURATION_SECONDS).", field="file")
    job = st.jobs.create(task_id, options, **fields)
    try:
        queues.send(st.broker, queues.EXTRACT_ACTOR, task_id)
    except Exception as exc:
        log.exception("could not queue job %s", task_id)
        st.jobs.transition(task_id, State.FAILED, error={
            "code": "dependency_unavailable", "message": "The job could not be queued."})
        raise DependencyUnavailable("The job could not be queued; try again shortly.") from exc
    return Submitted(job, form)


def _webhook_fields(form: dict[str, str], st: ApiState) -> dict[str, str]:
    url = form.get("webhook_url", "").strip()
    name = form.get("webhook_auth_header_name", "").strip()
    value = form.get("webhook_auth_header_value", "")
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
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", name) or name.lower().startswith("webhook-"):
            raise InvalidOption("webhook_auth_header_name must be a plain header name such as "
                                "Authorization.", field="webhook_auth_header_name")
        if any(c in value for c in "\r\n"):
            raise InvalidOption("webhook_auth_header_value must be one line.",
                                field="webhook_auth_header_value")
        fields |= {"webhook_auth_header_name": name, "webhook_auth_header_value": value}
    return fields
