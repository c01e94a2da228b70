"""The one place where errors become HTTP answers: always JSON ``{"error": {code, message}}``."""

from __future__ import annotations

import logging
import re
from typing import Any

import pika.exceptions
import redis
from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import WebsocketMismatch

from pipeline.errors import BadRequest, DependencyUnavailable, InvalidOption, PipelineError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message, **extra}}), status


def _http_code(exc: HTTPException) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")


def http_error_body(exc: HTTPException) -> tuple[dict[str, Any], int]:
    """Werkzeug's HTTP errors, and the request validation errors flask-smorest raises as 422
    with the failing fields in ``exc.data["messages"]``, in the service's error shape."""
    status = exc.code or 500
    messages = (getattr(exc, "data", None) or {}).get("messages")
    if status == 422 and isinstance(messages, dict) and messages:
        location, fields = next(iter(messages.items()))
        field, problems = next(iter(fields.items())) if isinstance(fields, dict) and fields else ("", [])
        if field == "file" and location in ("files", "form_and_files"):
            err: PipelineError = BadRequest(
                "No file was sent: attach the recording as the multipart field 'file'.", field="file")
        else:
            detail = problems[0] if isinstance(problems, list) and problems else str(problems)
            if detail == "Unknown field.":
                detail = f"Unknown field {field!r}."
            else:
                detail = f"{field}: {detail}"
            err = InvalidOption(detail, field=str(field))
        return {"error": err.to_dict()}, err.http_status
    message = exc.description or exc.name
    if isinstance(exc, WebsocketMismatch):
        message = "This route is a WebSocket: connect with an 'Upgrade: websocket' request."
    if status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        length = request.content_length if request else None
        if limit and (length is None or length > limit):
            message = f"The upload is larger than this service accepts ({limit // 2**20} MB)."
        else:  # a part of the form, not the whole of it (api.submission names a field where it can)
            message = "A part of this request is larger than this service accepts."
    return {"error": {"code": _http_code(exc), "message": message}}, status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(PipelineError)
    def pipeline_error(exc: PipelineError) -> tuple[Response, int, dict[str, str]]:
        return jsonify({"error": exc.to_dict()}), exc.http_status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        body, status = http_error_body(exc)
        return jsonify(body), status

    @app.errorhandler(redis.RedisError)
    @app.errorhandler(pika.exceptions.AMQPError)
    def dependency_error(exc: Exception) -> tuple[Response, int]:
        log.warning("dependency unavailable: %r", exc)
        err = DependencyUnavailable(
            "A service this API depends on (Redis or RabbitMQ) is not answering; try again shortly."
        )
        return jsonify({"error": err.to_dict()}), err.http_status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side; it was logged.")
