"""The one place where errors become HTTP answers: always JSON ``{"error": {code, message}}``."""

from __future__ import annotations

import logging
import re

import pika.exceptions
import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from pipeline.errors import DependencyUnavailable, PipelineError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message, **extra}}), status


def _http_code(exc: HTTPException) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(PipelineError)
    def pipeline_error(exc: PipelineError) -> tuple[Response, int]:
        return jsonify({"error": exc.to_dict()}), exc.http_status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            if limit:
                message = f"The upload is larger than this service accepts ({limit // 2**20} MB)."
        return error_response(status, _http_code(exc), message)

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
