"""api/errors.py: every error, the service's own and Werkzeug's, answered as {"error": {code, message}}."""

from __future__ import annotations

from typing import Any

import pika.exceptions
import pytest
import redis
from flask import Flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge, UnprocessableEntity
from werkzeug.routing import WebsocketMismatch
from werkzeug.test import TestResponse

from api.errors import error_response, http_error_body, register_error_handlers
from pipeline.errors import JobConflict, TooManyRequests, Unauthorized


def validation_error(messages: dict[str, Any]) -> HTTPException:
    # What flask-smorest (through webargs) raises when a request's fields fail their schema.
    exc = UnprocessableEntity()
    exc.data = {"messages": messages}  # type: ignore[attr-defined]
    return exc


def error_of(answer: TestResponse) -> dict[str, Any]:
    body: dict[str, Any] = answer.get_json()
    return dict(body["error"])


def app_raising(exc: BaseException) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 3 * 2**20

    def boom() -> str:
        raise exc

    app.add_url_rule("/boom", "boom", boom, methods=["GET", "POST"])
    register_error_handlers(app)
    return app


def test_werkzeugs_errors_get_a_snake_case_code_from_their_name() -> None:
    assert http_error_body(NotFound()) == ({"error": {"code": "not_found", "message": NotFound.description}}, 404)
    body, status = http_error_body(MethodNotAllowed(valid_methods=["GET"]))
    assert (body["error"]["code"], status) == ("method_not_allowed", 405)


def test_an_unknown_field_is_an_invalid_option_naming_it() -> None:
    body, status = http_error_body(validation_error({"form_and_files": {"colour": ["Unknown field."]}}))
    assert status == 422
    assert body == {"error": {"code": "invalid_option", "message": "Unknown field 'colour'.", "field": "colour"}}


def test_a_field_that_fails_its_schema_says_its_first_problem() -> None:
    body, _ = http_error_body(validation_error({"query": {"limit": ["Must be between 1 and 100.", "another"]}}))
    assert body["error"] == {"code": "invalid_option", "message": "limit: Must be between 1 and 100.", "field": "limit"}


def test_a_missing_file_part_is_a_400_saying_how_to_send_it() -> None:
    for location in ("files", "form_and_files"):
        body, status = http_error_body(validation_error({location: {"file": ["Missing data for required field."]}}))
        assert status == 400
        assert body["error"]["code"] == "bad_request" and body["error"]["field"] == "file"


def test_a_422_without_field_messages_keeps_werkzeugs_wording() -> None:
    body, status = http_error_body(validation_error({}))
    assert (status, body["error"]["code"]) == (422, "unprocessable_entity")


def test_a_plain_request_to_a_websocket_route_is_told_to_upgrade() -> None:
    body, status = http_error_body(WebsocketMismatch())
    assert status == 400
    assert body["error"]["message"] == "This route is a WebSocket: connect with an 'Upgrade: websocket' request."


def test_a_413_says_the_whole_upload_limit_only_when_the_whole_upload_is_over_it() -> None:
    app = app_raising(RequestEntityTooLarge())
    client = app.test_client()
    whole = client.post("/boom", data=b"x" * (3 * 2**20 + 1))
    assert whole.status_code == 413
    assert whole.json == {"error": {"code": "request_entity_too_large",
                                    "message": "The upload is larger than this service accepts (3 MB)."}}
    part = client.post("/boom", data=b"x" * 10)
    assert error_of(part)["message"] == "A part of this request is larger than this service accepts."


def test_a_service_error_keeps_its_status_code_field_and_headers() -> None:
    client = app_raising(TooManyRequests("slow down", limit="RATE_LIMIT", retry_after=7)).test_client()
    answer = client.get("/boom")
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "7")
    assert answer.json == {"error": {"code": "too_many_requests", "message": "slow down", "limit": "RATE_LIMIT"}}
    unauthorized = app_raising(Unauthorized("who are you?")).test_client().get("/boom")
    assert unauthorized.status_code == 401
    assert unauthorized.headers["WWW-Authenticate"] == 'Bearer realm="whisper-pipeline"'
    conflict = app_raising(JobConflict("already done", field="task_id")).test_client().get("/boom")
    assert conflict.json == {"error": {"code": "conflict", "message": "already done", "field": "task_id"}}


@pytest.mark.parametrize("exc", [redis.ConnectionError("gone"), pika.exceptions.AMQPConnectionError("gone")])
def test_redis_or_rabbitmq_down_is_a_503_that_says_to_retry(exc: Exception) -> None:
    answer = app_raising(exc).test_client().get("/boom")
    assert answer.status_code == 503
    assert error_of(answer)["code"] == "dependency_unavailable"


def test_an_unexpected_exception_is_a_500_that_shows_nothing_of_it() -> None:
    answer = app_raising(KeyError("secret internals")).test_client().get("/boom")
    assert answer.status_code == 500
    assert answer.json == {"error": {"code": "internal_error",
                                     "message": "Something went wrong on our side; it was logged."}}
    assert "secret" not in answer.get_data(as_text=True)


def test_error_response_puts_extra_fields_beside_code_and_message() -> None:
    with Flask(__name__).app_context():
        response, status = error_response(409, "conflict", "no", field="task_id")
        assert (status, response.get_json()) == (409, {"error": {"code": "conflict", "message": "no",
                                                                 "field": "task_id"}})
