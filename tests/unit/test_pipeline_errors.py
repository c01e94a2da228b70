"""pipeline/errors.py: what an error says about itself (code, status, body, headers), and rebuilding a failed
job's error from the code it stored."""

from __future__ import annotations

import pytest

from pipeline.errors import (
    ERRORS_BY_CODE,
    AudioQuotaExceeded,
    BadRequest,
    DependencyUnavailable,
    FetchTimeout,
    InvalidOption,
    LiveEventError,
    ModelFormatError,
    NoAudioStream,
    PipelineError,
    ResultOfFailedJob,
    StorageUnavailable,
    TooManyRequests,
    Unauthorized,
    error_for,
)


def test_the_body_has_the_field_only_where_one_is_named() -> None:
    assert InvalidOption("Bad beam.", field="beam_size").to_dict() == {
        "code": "invalid_option", "message": "Bad beam.", "field": "beam_size"}
    assert BadRequest("No file.").to_dict() == {"code": "bad_request", "message": "No file."}
    assert str(BadRequest("No file.")) == "No file."


@pytest.mark.parametrize(("error", "code", "status", "retryable"), [
    (NoAudioStream("x"), "no_audio_stream", 415, False),
    (ModelFormatError("x"), "model_format_error", 422, False),
    (ResultOfFailedJob("x"), "job_failed", 409, False),
    (StorageUnavailable("x"), "storage_unavailable", 503, True),
    (FetchTimeout("x"), "fetch_timeout", 400, False),
])
def test_a_subclass_has_its_own_code_and_its_parents_status(
        error: PipelineError, code: str, status: int, retryable: bool) -> None:
    assert (error.code, error.http_status, error.retryable) == (code, status, retryable)


def test_a_rate_limit_names_its_limit_and_when_to_come_back() -> None:
    error = AudioQuotaExceeded("Over today's audio.", limit="AUDIO_SECONDS_PER_DAY", retry_after=3600)
    assert error.to_dict() == {"code": "audio_quota_exceeded", "message": "Over today's audio.",
                               "limit": "AUDIO_SECONDS_PER_DAY"}
    assert (error.http_status, error.headers) == (429, {"Retry-After": "3600"})
    assert "limit" not in TooManyRequests("Slow down.").to_dict()


@pytest.mark.parametrize(("given", "header"), [(0, "1"), (-5, "1"), (2.9, "2"), (60, "60")])
def test_retry_after_is_whole_seconds_and_at_least_one(given: float, header: str) -> None:
    error = TooManyRequests("Slow down.", retry_after=given)  # type: ignore[arg-type]
    assert error.headers == {"Retry-After": header} and error.retry_after == int(header)


def test_one_errors_headers_are_its_own() -> None:
    # Each rate-limit answer sets its own Retry-After; none may leak to the class or to another error.
    TooManyRequests("a", retry_after=5)
    assert TooManyRequests.headers == {} and PipelineError.headers == {}
    assert PipelineError("x").headers == {}
    assert Unauthorized("x").headers == {"WWW-Authenticate": 'Bearer realm="whisper-pipeline"'}


def test_a_stored_code_comes_back_as_its_class() -> None:
    error = error_for("dependency_unavailable", "Redis went away.")
    assert type(error) is DependencyUnavailable
    assert (error.message, error.http_status) == ("Redis went away.", 503)
    rate = error_for("too_many_active_jobs", "Too many.")
    assert rate.headers == {"Retry-After": "60"}  # the default wait, as the class builds it


@pytest.mark.parametrize("code", [None, "", "internal_error"])
def test_no_code_is_an_internal_error(code: str | None) -> None:
    error = error_for(code, "Something broke.")
    assert type(error) is PipelineError
    assert error.to_dict() == {"code": "internal_error", "message": "Something broke."}


def test_an_unknown_code_keeps_its_name_and_answers_500() -> None:
    # A code written by a newer version of the service than the one reading it.
    error = error_for("gpu_on_fire", "Hot.")
    assert (type(error), error.code, error.http_status) == (PipelineError, "gpu_on_fire", 500)
    assert error.to_dict() == {"code": "gpu_on_fire", "message": "Hot."}
    assert PipelineError.code == "internal_error"  # set on the one error, not the class


def test_every_code_in_the_table_builds_an_error_with_that_code() -> None:
    for code in ERRORS_BY_CODE:
        assert error_for(code, "m").to_dict() == {"code": code, "message": "m"}


def test_a_live_event_error_names_the_events_field() -> None:
    error = LiveEventError("Unknown event type.", code="invalid_event", param="type")
    assert (str(error), error.message, error.code, error.param) == (
        "Unknown event type.", "Unknown event type.", "invalid_event", "type")
    assert not isinstance(error, PipelineError)
