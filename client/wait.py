"""Following a job to its end: on its event stream, else by polling its status."""

from __future__ import annotations

import logging
import time
from typing import Any

from client.errors import ApiError
from client.events import Event
from client.http import FINAL_STATES, Client
from client.progress import Progress

log = logging.getLogger("whisper-pipeline")

POLL_INTERVAL = 1.0


class WaitTimeout(Exception):
    """--wait-timeout passed before the job reached a final state."""


class JobEnded(Exception):
    """The job ended failed or cancelled; ``summary`` is its last status document."""

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__(summary.get("status"))
        self.summary = summary


def wait_for_job(client: Client, task_id: str, progress: Progress, timeout: float | None) -> dict[str, Any]:
    """Follow a job until it is final: on its event stream, or by polling its status once the
    stream breaks. Answers the final summary; raises JobEnded when it failed or was cancelled,
    WaitTimeout when ``timeout`` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    summary = _follow_events(client, task_id, progress, deadline)
    if summary is None:
        summary = _poll(client, task_id, progress, deadline)
    if summary.get("status") != "completed":
        raise JobEnded(summary)
    return summary


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise WaitTimeout
    return left


def _follow_events(client: Client, task_id: str, progress: Progress,
                   deadline: float | None) -> dict[str, Any] | None:
    """The final summary from the event stream, or None when the stream broke first."""
    while True:
        remaining = _remaining(deadline)
        # Above the service's 15 s keep-alive, and no longer than the time left to wait.
        read_timeout = 40.0 if remaining is None else max(0.5, min(40.0, remaining + 0.2))
        end: dict[str, Any] | None = None
        try:
            stream = client.events(task_id, read_timeout=read_timeout)
            try:
                for event in stream:
                    end = _on_event(event, progress)
                    if end is not None:
                        break
                    _remaining(deadline)
            finally:
                stream.close()  # the connection, also when the wait times out
        except ApiError as exc:
            _remaining(deadline)
            if exc.status == 404:
                raise
            log.debug("event stream for %s broke (%s); polling instead", task_id, exc)
            return None
        if end is None:
            log.debug("event stream for %s ended without an end event; polling instead", task_id)
            return None
        if end.get("status") in FINAL_STATES:
            return end
        # The service closes long streams after a while: subscribe again.


def _on_event(event: Event, progress: Progress) -> dict[str, Any] | None:
    data = event.data
    if event.name == "status":
        progress.job(str(data.get("status")), number(data.get("progress")))
    elif event.name in ("segment", "progress"):  # progress: a part that decodes no segments
        progress.job(progress.status or "transcribing", number(data.get("progress")))
    elif event.name == "end":
        if data.get("status") in FINAL_STATES:
            progress.job(str(data["status"]), number(data.get("progress")))
        return data
    return None


def _poll(client: Client, task_id: str, progress: Progress, deadline: float | None) -> dict[str, Any]:
    failures = 0
    while True:
        _remaining(deadline)
        try:
            body = client.status(task_id)
            failures = 0
        except ApiError as exc:
            if exc.status is not None and exc.status < 500:
                raise
            failures += 1
            if failures >= 10:
                raise
            log.debug("status of %s unavailable (%s); trying again", task_id, exc)
        else:
            status = str(body.get("status"))
            progress.job(status, number(body.get("progress")))
            if status in FINAL_STATES:
                return body
        remaining = _remaining(deadline)
        time.sleep(POLL_INTERVAL if remaining is None else min(POLL_INTERVAL, remaining))


def number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
