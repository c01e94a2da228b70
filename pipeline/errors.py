"""One error tree for the whole service.

Each error carries the HTTP status it maps to (used only by ``api.errors``), a stable
machine-readable ``code`` and a message a person can act on. ``retryable`` tells the
actors whether running the same message again could possibly succeed.
"""

from __future__ import annotations


class PipelineError(Exception):
    code = "internal_error"
    http_status = 500
    retryable = True
    headers: dict[str, str] = {}  # noqa: RUF012 - extra HTTP headers for the answer; never mutated

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class SettingsError(PipelineError):
    code = "invalid_setting"
    retryable = False


class BadRequest(PipelineError):
    code = "bad_request"
    http_status = 400
    retryable = False


class UploadTooLarge(PipelineError):
    code = "request_entity_too_large"
    http_status = 413
    retryable = False


class InvalidOption(PipelineError):
    """A request option with an unknown name or a value out of range."""

    code = "invalid_option"
    http_status = 422
    retryable = False


class UnsupportedMedia(PipelineError):
    """The file is not audio or video that the service can read."""

    code = "unsupported_media"
    http_status = 415
    retryable = False


class NoAudioStream(UnsupportedMedia):
    code = "no_audio_stream"


class MediaDecodeError(PipelineError):
    """The container was recognised but its audio could not be decoded (truncated, corrupt)."""

    code = "media_decode_error"
    http_status = 422
    retryable = False


class MediaTooLong(PipelineError):
    code = "media_too_long"
    http_status = 422
    retryable = False


class JobNotFound(PipelineError):
    code = "not_found"
    http_status = 404
    retryable = False


class JobConflict(PipelineError):
    code = "conflict"
    http_status = 409
    retryable = False


class ResultNotReady(PipelineError):
    code = "result_not_ready"
    http_status = 409
    retryable = False


class ResultOfFailedJob(ResultNotReady):
    """The job ended ``failed``: there is no transcript and never will be."""

    code = "job_failed"


class SyncTimeout(PipelineError):
    code = "sync_timeout"
    http_status = 504
    retryable = False


class DependencyUnavailable(PipelineError):
    """Redis or RabbitMQ did not answer; trying again later may work."""

    code = "dependency_unavailable"
    http_status = 503
    retryable = True


class TranscriptionError(PipelineError):
    code = "transcription_error"
    http_status = 500
    retryable = True


class ModelNotFound(PipelineError):
    code = "model_not_found"
    http_status = 422
    retryable = False


class JobCancelled(PipelineError):
    """Raised inside a stage to unwind when the cancellation flag is seen."""

    code = "cancelled"
    http_status = 409
    retryable = False
