"""Job events in the API process: one Redis pub/sub connection per process (the hub), and what
follows a job through it (the event stream, the synchronous routes' wait).

A subscription per stream would hold a Redis connection per open stream: a thousand followers
would be a thousand connections on Redis, and as many sockets here. Instead one reader (a
greenlet under gunicorn's gevent worker, a thread elsewhere) owns the process's ``PubSub``,
subscribes to the channels that local listeners follow, and hands each message to their inboxes.
Under the gevent worker a waiting client is a parked greenlet: it holds no thread, and the API
answers everyone else meanwhile.

Only the reader touches the ``PubSub`` object: a listener queues what it wants and wakes the
reader by publishing on the hub's own control channel, so no two greenlets ever use one
connection. ``listen`` returns once Redis has confirmed the subscription, so a caller that
reads a job's record afterwards cannot miss an event published in between.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis

from pipeline.jobs import FINAL_STATES, Job, JobStore
from pipeline.keys import FANOUT_CHANNEL, events_channel, job_key

log = logging.getLogger(__name__)

# Events of one job are a few hundred at most; an inbox this full belongs to a reader that
# stopped reading, and it is told so rather than growing without bound.
INBOX_SIZE = 10_000
READ_TIMEOUT = 5.0  # the reader's longest sleep, when nothing at all happens
IDLE_EXIT_SECONDS = 30.0  # with no listener this long, the reader closes its connection
CONFIRM_TIMEOUT = 10.0


class Overflowed(Exception):
    """The inbox filled up: events were dropped, the listener should read the record again."""


class Inbox:
    """What one listener receives: the messages' data, in order."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._queue: queue.Queue[str | None] = queue.Queue(INBOX_SIZE)
        self.overflowed = False
        self.closing = False  # the process is stopping: an event stream should end now

    def put(self, data: str | None) -> None:
        try:
            self._queue.put_nowait(data)
        except queue.Full:
            self.overflowed = True

    def get(self, timeout: float) -> str | None:
        """The next message, or None after ``timeout`` seconds (or when the hub lost its
        connection for a moment, so that the caller reads the record again)."""
        if self.overflowed:
            raise Overflowed(self.channel)
        try:
            return self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None


class EventHub:
    def __init__(self, client: redis.Redis, name: str = FANOUT_CHANNEL) -> None:
        self.redis = client
        self.control = f"{name}:{uuid.uuid4().hex}"
        self._lock = threading.Lock()
        self._inboxes: dict[str, set[Inbox]] = {}
        self._confirmed: dict[str, threading.Event] = {}
        self._pending: set[str] = set()  # channels whose (un)subscription the reader must make
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._ending = False

    # -- for listeners -------------------------------------------------------------------------
    @contextlib.contextmanager
    def listen(self, channel: str) -> Iterator[Inbox]:
        inbox = Inbox(channel)
        with self._lock:
            inbox.closing = self._ending
            listeners = self._inboxes.setdefault(channel, set())
            listeners.add(inbox)
            confirmed = self._confirmed.get(channel)
            if confirmed is None:
                confirmed = self._confirmed[channel] = threading.Event()
                self._pending.add(channel)
            self._ensure_reader()
        try:
            if not confirmed.is_set():
                self._wake()
                if not confirmed.wait(CONFIRM_TIMEOUT):
                    raise redis.ConnectionError(f"Redis did not confirm the subscription to {channel}")
            yield inbox
        finally:
            with self._lock:
                listeners.discard(inbox)
                if not listeners:
                    del self._inboxes[channel]
                    self._confirmed.pop(channel, None)
                    self._pending.add(channel)
            # Unsubscribing can wait for the reader's next wake-up: only Redis's traffic to an
            # idle channel is at stake, and waking it here would cost a publish per listener.

    def listeners(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._inboxes.values())

    def close(self) -> None:
        self._stopping = True
        self._wake()

    def end_streams(self) -> None:
        """The process is stopping: every listener is woken with ``closing`` set, and later
        ones start with it. An event stream then ends (its client reconnects, to a process that
        is not stopping); a synchronous wait ignores it and goes on to its job's end."""
        with self._lock:
            self._ending = True
            inboxes = [i for group in self._inboxes.values() for i in group]
        for inbox in inboxes:
            inbox.closing = True
            inbox.put(None)

    # -- the reader ----------------------------------------------------------------------------
    def _wake(self) -> None:
        self.redis.publish(self.control, "")

    def _ensure_reader(self) -> None:  # under self._lock
        if self._reader is None or not self._reader.is_alive():
            self._stopping = False
            self._reader = threading.Thread(target=self._run, name="event-hub", daemon=True)
            self._reader.start()

    def _run(self) -> None:
        pubsub = self.redis.pubsub()
        subscribed: set[str] = set()
        idle_since = time.monotonic()
        try:
            pubsub.subscribe(self.control)
            while not self._stopping:
                self._apply(pubsub, subscribed)
                try:
                    message = pubsub.get_message(timeout=READ_TIMEOUT)
                except redis.RedisError:
                    log.warning("event hub: Redis connection lost; resubscribing", exc_info=True)
                    self._lost()
                    time.sleep(1)
                    continue
                if message is not None:
                    self._dispatch(message)
                with self._lock:
                    if self._inboxes or self._pending:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
                        self._reader = None
                        return
        except Exception:  # the reader must not die silently; its listeners time out
            log.exception("event hub reader stopped")
        finally:
            with self._lock:
                if self._reader is threading.current_thread():
                    self._reader = None
                # Listeners still waiting are subscribed afresh by the next reader.
                for channel in self._inboxes:
                    self._pending.add(channel)
            with contextlib.suppress(Exception):
                pubsub.close()

    def _apply(self, pubsub: redis.client.PubSub, subscribed: set[str]) -> None:
        with self._lock:
            pending, self._pending = self._pending, set()
            wanted = {c for c in pending if c in self._inboxes}
        # Still subscribed (a listener came back before the unsubscription went out): at once.
        for channel in wanted & subscribed:
            self._confirm(channel)
        subscribe = sorted(wanted - subscribed)
        unsubscribe = sorted((pending - wanted) & subscribed)
        if subscribe:
            pubsub.subscribe(*subscribe)
            subscribed.update(subscribe)
        if unsubscribe:
            pubsub.unsubscribe(*unsubscribe)
            subscribed.difference_update(unsubscribe)

    def _confirm(self, channel: str) -> None:
        with self._lock:
            event = self._confirmed.get(channel)
        if event is not None:
            event.set()

    def _dispatch(self, message: dict[str, object]) -> None:
        kind, channel, data = message.get("type"), str(message.get("channel")), message.get("data")
        if kind == "subscribe":
            self._confirm(channel)
        elif kind == "message" and channel != self.control:
            with self._lock:
                inboxes = list(self._inboxes.get(channel, ()))
            for inbox in inboxes:
                inbox.put(str(data))

    def _lost(self) -> None:
        """Messages may have been missed while the connection was down: every listener is
        woken with None, to read its job's record again."""
        with self._lock:
            inboxes = [i for group in self._inboxes.values() for i in group]
        for inbox in inboxes:
            inbox.put(None)


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
