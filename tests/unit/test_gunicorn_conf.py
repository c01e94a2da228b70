"""api/gunicorn_conf.py: gunicorn's own refusals answered in the service's JSON error shape."""

from __future__ import annotations

import json
import socket

import pytest
from gunicorn import util

from api.gunicorn_conf import json_error, json_errors


def parse(answer: bytes) -> tuple[str, dict[str, str], dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert int(headers["Content-Length"]) == len(body)
    return status, headers, json.loads(body)


def test_a_known_refusal_gets_its_code_and_the_services_words() -> None:
    status, headers, body = parse(json_error(431, "Request Header Fields Too Large", "ignored detail"))
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert body == {"error": {"code": "request_header_fields_too_large", "message":
                              "The request's headers are larger than this service accepts (8190 bytes a header, "
                              "100 headers)."}}
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Connection"] == "close"


def test_any_other_refusal_is_a_bad_request_with_gunicorns_detail_cut_to_200_characters() -> None:
    _, _, body = parse(json_error(400, "Bad Request", "Invalid header " + "x" * 500))
    assert body["error"] == {"code": "bad_request",
                             "message": f"The request is not valid HTTP: {('Invalid header ' + 'x' * 500)[:200]}."}
    _, _, bare = parse(json_error(400, "Bad Request", ""))
    assert bare["error"] == {"code": "bad_request", "message": "The request is not valid HTTP"}


def test_a_detail_with_quotes_and_newlines_still_makes_valid_json() -> None:
    _, _, body = parse(json_error(400, "Bad Request", 'bad "header"\r\nInjected: yes'))
    assert body["error"] == {"code": "bad_request",
                             "message": 'The request is not valid HTTP: bad "header"\r\nInjected: yes.'}


def test_json_errors_makes_gunicorns_error_writer_send_the_json_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Put back gunicorn's own writer after the test, whatever json_errors installs.
    monkeypatch.setattr(util, "write_error", util.write_error)
    json_errors()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        util.write_error(ours, 414, "Request-URI Too Long", "")
        ours.shutdown(socket.SHUT_WR)
        received = b"".join(iter(lambda: theirs.recv(65536), b""))
    assert received == json_error(414, "Request-URI Too Long", "")
    assert parse(received)[2]["error"]["code"] == "request_uri_too_large"  # type: ignore[index]
