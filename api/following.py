"""Following a job from the API: its event stream and the synchronous routes' wait, both fed
by the process's one subscriber (``api.fanout``) instead of a Redis connection each.

Under gunicorn's gevent worker a waiting client is a parked greenlet: it holds no thread, and
the API answers everyone else meanwhile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from api.fanout import EventHub, Overflowed
from pipeline.jobs import FINAL_STATES, Job, JobStore
from pipeline.keys import events_channel, job_key

# Even with no event at all, the record is read again this often: the one safety net for an
# event lost while Redis reconnected.
RECHECK_SECONDS = 5.0


def is_final(jobs: JobStore, task_id: str) -> bool:
    """One field, not the whole record: a thousand quiet streams ask this every ``idle``."""
    status = jobs.redis.hget(job_key(task_id), "status")
    return status is None or status in FINAL_STATES  # an expired record ends its stream too


def wait_final(hub: EventHub, jobs: JobStore, task_id: str, timeout: float) -> Job:
    """The job once it is final, or as it stands after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with hub.listen(events_channel(task_id)) as inbox:
        job = jobs.get(task_id)  # subscribed first, so a transition in between is not missed
        while not job.is_final:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                inbox.get(min(left, RECHECK_SECONDS))
            except Overflowed:
                pass
            job = jobs.get(task_id)
        return job


def job_events(hub: EventHub, jobs: JobStore, task_id: str, *, max_seconds: float,
               idle: float = 15.0) -> Iterator[dict[str, Any] | None]:
    """A job's events for its SSE stream: where it stands first (status, then the segments
    decoded so far), then each event as published, until the job is final, ``max_seconds``
    have passed or the process is stopping (``EventHub.end_streams``). ``None`` after ``idle``
    quiet seconds, for the caller's keep-alive."""
    deadline = time.monotonic() + max_seconds
    with hub.listen(events_channel(task_id)) as inbox:
        job = jobs.get(task_id)
        snapshot = {"type": "status", "task_id": task_id, "status": job.status, "stage": job.stage,
                    "progress": job.progress, "at": job.updated_at}
        # A running job's state comes first; a finished job's last, as its stream would end.
        if not job.is_final:
            yield snapshot
        seen = set()
        for segment in jobs.segments(task_id):
            seen.add(segment.id)
            yield {"type": "segment", "task_id": task_id, "segment": segment.to_dict(),
                   "progress": job.progress}
        if job.is_final:
            yield snapshot
            return
        quiet_since = time.monotonic()
        while (left := deadline - time.monotonic()) > 0 and not inbox.closing:
            try:
                data = inbox.get(min(left, idle - (time.monotonic() - quiet_since)))
            except Overflowed:
                return  # the client reconnects and starts from the record
            if inbox.closing:
                return  # the process is stopping: the client reconnects to another
            if data is None:
                if is_final(jobs, task_id):
                    return
                if time.monotonic() - quiet_since >= idle:
                    quiet_since = time.monotonic()
                    yield None
                continue
            quiet_since = time.monotonic()
            event = json.loads(data)
            if event.get("type") == "segment" and event["segment"]["id"] in seen:
                continue  # published between subscribing and reading the record
            yield event
            if event.get("type") == "status" and event.get("status") in FINAL_STATES:
                return
