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


class UnknownModel(PipelineError):
    """A model id that ``GET /v1/models/<id>`` does not list."""

    code = "model_not_listed"
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


class WorkerDied(PipelineError):
    """The worker running a job stopped (killed, out of memory) more times than retries allow."""

    code = "worker_died"
    retryable = False


class TimeLimitReached(PipelineError):
    """The job ran past JOB_TIME_LIMIT_SECONDS; the same input would run out of time again."""

    code = "time_limit"
    retryable = False


class JobLost(PipelineError):
    """The reconciler sent the job's stage again, MAX_RETRIES times, and it never moved."""

    code = "lost"
    retryable = False


class Unauthorized(PipelineError):
    code = "unauthorized"
    http_status = 401
    retryable = False
    headers = {"WWW-Authenticate": 'Bearer realm="whisper-pipeline"'}  # noqa: RUF012


class ModelFormatError(ModelNotFound):
    """A model file exists but is not a CTranslate2 Whisper model the service can read."""

    code = "model_format_error"


class ModelIntegrityError(PipelineError):
    """A packaged model file does not have the sha256 it was released with.

    The install is damaged (a truncated download, a disk error, a swapped file); running the
    job again reads the same bytes, so it is not retried: reinstalling the package mends it.
    """

    code = "model_integrity_error"
    http_status = 500
    retryable = False


class StorageUnavailable(DependencyUnavailable):
    """The object store (STORAGE_URL) is down, or refuses these credentials or the bucket."""

    code = "storage_unavailable"


class StoredFileMissing(PipelineError):
    """A file of the job is not in storage: removed, or written where this host cannot see it."""

    code = "file_missing"
    http_status = 410
    retryable = False


class DiarizationError(PipelineError):
    """Speaker diarization could not run (models missing or unreadable, or the audio broke it)."""

    code = "diarization_error"
    http_status = 500
    retryable = False


class Forbidden(PipelineError):
    """A valid key that may not do this: the route needs one of ADMIN_API_KEYS."""

    code = "forbidden"
    http_status = 403
    retryable = False


class TooManyRequests(PipelineError):
    """A per-client limit refused the request: RATE_LIMIT here, the others in the subclasses.

    ``limit`` names the setting in the answer; ``retry_after`` (seconds) becomes Retry-After."""

    code = "too_many_requests"
    http_status = 429
    retryable = False

    def __init__(self, message: str, *, limit: str = "", retry_after: int = 60,
                 field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.limit = limit
        self.retry_after = max(1, int(retry_after))
        self.headers = {"Retry-After": str(self.retry_after)}

    def to_dict(self) -> dict[str, str]:
        body = super().to_dict()
        if self.limit:
            body["limit"] = self.limit
        return body


class TooManyStreams(TooManyRequests):
    code = "too_many_streams"


class TooManyLiveSessions(TooManyRequests):
    code = "too_many_live_sessions"


class TooManyActiveJobs(TooManyRequests):
    code = "too_many_active_jobs"


class AudioQuotaExceeded(TooManyRequests):
    code = "audio_quota_exceeded"


class FetchTimeout(BadRequest):
    """The file at ``url`` did not arrive within FETCH_TIMEOUT_SECONDS."""

    code = "fetch_timeout"


class LiveEventError(Exception):
    """A live session's client event that cannot be applied (``/v1/realtime``): answered on the
    socket with an ``error`` event (``code``, ``message``, ``param`` naming the event's field)
    and the session stays open. Not a PipelineError: it never becomes an HTTP answer or a job's
    error, so it has no status and no place in the code table below."""

    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


# A failed job stores only its error's code; the API turns it back into the class, and so its
# HTTP status, through this table. Listed by hand, not found by walking subclasses, so that an
# error defined in a module the web process never imports still answers with its own status.
# Every PipelineError subclass belongs here, so define errors above it (tests/integration/test_api.py checks).
ERRORS_BY_CODE: dict[str, type[PipelineError]] = {
    cls.code: cls
    for cls in (
        PipelineError,
        SettingsError,
        BadRequest,
        UploadTooLarge,
        InvalidOption,
        UnsupportedMedia,
        NoAudioStream,
        MediaDecodeError,
        MediaTooLong,
        JobNotFound,
        UnknownModel,
        JobConflict,
        ResultNotReady,
        ResultOfFailedJob,
        SyncTimeout,
        DependencyUnavailable,
        TranscriptionError,
        ModelNotFound,
        JobCancelled,
        WorkerDied,
        TimeLimitReached,
        JobLost,
        Unauthorized,
        ModelFormatError,
        ModelIntegrityError,
        StorageUnavailable,
        StoredFileMissing,
        DiarizationError,
        Forbidden,
        TooManyRequests,
        TooManyStreams,
        TooManyLiveSessions,
        TooManyActiveJobs,
        AudioQuotaExceeded,
        FetchTimeout,
    )
}


def error_for(code: str | None, message: str) -> PipelineError:
    """The error a failed job recorded, rebuilt from its code: the class's own HTTP status, or a
    500 that keeps an unknown code (one written by a newer version, say)."""
    cls = ERRORS_BY_CODE.get(code or PipelineError.code)
    if cls is not None:
        return cls(message)
    exc = PipelineError(message)
    exc.code = str(code)
    return exc
