"""client/errors.py: ApiError's text, and how it is read from an answer that is or is not the service's JSON."""

from __future__ import annotations

import requests

from client.errors import TIMEOUT, UNREACHABLE, ApiError


def answer(status: int, body: bytes, reason: str = "") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.reason = reason
    response.encoding = "utf-8"
    return response


def test_the_text_names_the_status_the_code_and_the_field() -> None:
    assert str(ApiError(422, "invalid_option", "Bad engine.", "engine")) == (
        "Bad engine. (HTTP 422, invalid_option, field engine)")
    assert str(ApiError(404, "not_found", "No such job.")) == "No such job. (HTTP 404, not_found)"


def test_an_error_without_an_answer_has_no_status_in_its_text() -> None:
    error = ApiError(None, UNREACHABLE, "Could not reach it.")
    assert str(error) == "Could not reach it. (unreachable)"
    assert (error.status, error.code, error.message, error.field) == (None, UNREACHABLE, "Could not reach it.", None)
    assert str(ApiError(None, TIMEOUT, "Too slow.")) == "Too slow. (timeout)"


def test_the_services_json_error_gives_code_message_and_field() -> None:
    body = b'{"error": {"code": "invalid_option", "message": "Unknown engine.", "field": "engine"}}'
    error = ApiError.from_response(answer(422, body, "Unprocessable Entity"))
    assert (error.status, error.code, error.message) == (422, "invalid_option", "Unknown engine.")
    assert error.field == "engine"


def test_a_json_error_without_a_code_keeps_the_http_status_as_its_code() -> None:
    error = ApiError.from_response(answer(409, b'{"error": {"message": "Not yet."}}'))
    assert (error.code, error.message, error.field) == ("http_409", "Not yet.", None)


def test_a_plain_text_body_becomes_the_message_cut_to_200_characters() -> None:
    error = ApiError.from_response(answer(502, b"  upstream " + b"x" * 300 + b"\n", "Bad Gateway"))
    assert error.code == "http_502"
    assert error.message == ("upstream " + "x" * 300)[:200]


def test_an_html_page_gives_the_reason_not_its_markup() -> None:
    # A proxy's error page says nothing a person can act on in a terminal.
    error = ApiError.from_response(answer(503, b"<html><body>Service Unavailable</body></html>", "Service Unavailable"))
    assert (error.code, error.message) == ("http_503", "Service Unavailable")


def test_an_empty_answer_without_a_reason_still_has_a_message() -> None:
    error = ApiError.from_response(answer(500, b""))
    assert (error.status, error.code, error.message) == (500, "http_500", "request failed")


def test_json_that_is_not_an_error_object_is_read_as_text() -> None:
    error = ApiError.from_response(answer(400, b'{"error": "plain string"}', "Bad Request"))
    assert (error.code, error.message) == ("http_400", '{"error": "plain string"}')
