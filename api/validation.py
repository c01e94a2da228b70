"""Values from the URL checked before they reach Redis: a task id or a cursor that could never
be valid answers 404 or 400, never a Redis type error (an id such as ``x:lease`` names another
kind of key) turned into a 503."""

from __future__ import annotations

import math
import re

from flask import request

from pipeline.errors import InvalidOption, JobNotFound

# pipeline.jobs.new_task_id: uuid4().hex
TASK_ID = re.compile(r"[0-9a-f]{32}")
# next_cursor: a job's creation time as repr(float) writes it.
CURSOR = re.compile(r"[0-9]{1,12}(\.[0-9]{1,20})?", re.ASCII)


def check_task_id(task_id: str) -> str:
    """The id, or JobNotFound: an id this service never hands out is a job that does not exist."""
    if not TASK_ID.fullmatch(task_id):
        raise JobNotFound(f"No job with id {task_id[:64]}.")
    return task_id


def check_cursor(cursor: str | None) -> str | None:
    """A listing cursor is the creation time of the last job shown (``next_cursor``)."""
    if cursor is None:
        return None
    # ASCII digits only: float() also takes "1_000" and other scripts' digits, which Redis then
    # refuses, and that refusal looked like Redis being down.
    value = float(cursor) if CURSOR.fullmatch(cursor) else math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidOption("cursor must be a value from next_cursor", field="cursor")
    return cursor


def task_id_in_url() -> None:
    """A blueprint's ``before_request``: the ``<task_id>`` in the URL checked before the view
    runs. Flask runs the app's hooks first, so a malformed id is checked only once the caller is
    authenticated and counted by RATE_LIMIT, and ids cannot be probed for free."""
    values = request.view_args
    if values and isinstance(values.get("task_id"), str):
        check_task_id(values["task_id"])
