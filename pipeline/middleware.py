"""Worker middleware of our own."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)


def _reload_worker() -> None:
    # SIGHUP asks Dramatiq's main process to stop its workers gracefully (each finishes its
    # current message; unacknowledged ones go back to RabbitMQ) and then to start afresh.
    os.kill(os.getppid(), signal.SIGHUP)


class RecycleAfter(Middleware):
    """Restart the worker processes after ``max_tasks`` messages (MAX_TASKS_PER_CHILD), so
    that memory a long-running process gathers (allocator fragmentation, leaks in native
    libraries) is returned; Dramatiq has no such option of its own."""

    def __init__(self, max_tasks: int, recycle: Callable[[], None] = _reload_worker) -> None:
        self.max_tasks = max_tasks
        self.recycle = recycle
        self._done = 0
        self._lock = threading.Lock()
        self._requested = False

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *,
        result: Any = None, exception: BaseException | None = None,
    ) -> None:
        self._count()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._count()

    def _count(self) -> None:
        with self._lock:
            self._done += 1
            due = self._done >= self.max_tasks and not self._requested
            if due:
                self._requested = True
        if due:
            log.info("processed %d messages: recycling the worker processes", self._done)
            self.recycle()
