"""Logging for every process: one JSON object a line (or plain text with LOG_FORMAT=text), with
the task id of the job being worked on in every line logged while working on it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

current_task: ContextVar[str | None] = ContextVar("current_task", default=None)

_TEXT = "%(asctime)s %(levelname)s %(name)s [%(task_id)s]: %(message)s"


class TaskIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task_id"):
            record.task_id = current_task.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        task_id = getattr(record, "task_id", None)
        if task_id and task_id != "-":
            line["task_id"] = task_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


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
