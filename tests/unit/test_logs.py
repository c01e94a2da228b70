"""LOG_FORMAT=json: one JSON object a line, with the task id and every ``extra=`` field."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from pipeline.logs import JsonFormatter, TaskIdFilter, job_context


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TaskIdFilter())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_an_extra_field_is_a_field_of_the_json_line(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    logger.info("uploaded %s", "a.wav", extra={"bytes": 1234, "engine": "faster-whisper"})
    (line,) = lines(stream)
    assert line["message"] == "uploaded a.wav"
    assert line["bytes"] == 1234 and line["engine"] == "faster-whisper"
    assert line["level"] == "info" and line["logger"] == "tests.logs" and line["pid"] == os.getpid()
    assert str(line["time"]).endswith("+00:00")
    assert "task_id" not in line, "a line logged outside a job names no task"


def test_lines_logged_while_working_on_a_job_carry_its_id(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    with job_context("t-123"):
        logger.warning("slow", extra={"seconds": 2.5})
    logger.info("after")
    first, second = lines(stream)
    assert first["task_id"] == "t-123" and first["seconds"] == 2.5 and first["level"] == "warning"
    assert "task_id" not in second


def test_a_traceback_goes_under_exception(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    try:
        raise ValueError("bad ünïcode")
    except ValueError:
        logger.exception("failed")
    (line,) = lines(stream)
    assert "ValueError: bad ünïcode" in str(line["exception"])
    assert "ünïcode" in stream.getvalue(), "non-ASCII text is written as is"
