"""Logging for every process: one JSON object a line (or plain text with LOG_FORMAT=text), with
the task id of the job being worked on in every line logged while working on it, and whatever a
call passes in ``extra=`` as fields of its own."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

current_task: ContextVar[str | None] = ContextVar("current_task", default=None)

_TEXT = "%(asctime)s %(levelname)s %(name)s [%(task_id)s]: %(message)s"
NO_TASK = "-"


class TaskIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task_id"):
            record.task_id = current_task.get() or NO_TASK
        return True


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger's formatter with the service's fields (time, level, logger, pid,
    message), then the task id and any ``extra=`` fields; a traceback under ``exception``."""

    def __init__(self) -> None:
        super().__init__(["message"], rename_fields={"exc_info": "exception"}, json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["pid"] = os.getpid()
        super().add_fields(log_data, record, message_dict)
        if log_data.get("task_id") == NO_TASK:
            del log_data["task_id"]


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Give every handler of the root logger our format and the task id; add one if none."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    root.setLevel(level)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT)
    for handler in root.handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, TaskIdFilter) for f in handler.filters):
            handler.addFilter(TaskIdFilter())
    # pika narrates every connection at INFO; only its warnings help an operator.
    logging.getLogger("pika").setLevel(logging.WARNING)


@contextlib.contextmanager
def job_context(task_id: str) -> Iterator[None]:
    token = current_task.set(task_id)
    try:
        yield
    finally:
        current_task.reset(token)
