"""The RabbitMQ broker as each process builds it: Dramatiq's middleware with our limits, and
for the web process one publishing connection kept alive, with pika's loss reports folded into
one log line.
"""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from pipeline.settings import Settings

logger = logging.getLogger(__name__)

CONNECTION_LOST = "RabbitMQ connection for publishing was lost; reconnecting"
# RabbitMQ's default when the client asks for none: what the keeper assumes before it has seen
# a connection's negotiated value.
DEFAULT_HEARTBEAT_SECONDS = 60
MAX_KEEPALIVE_SECONDS = 10.0
# Where pika logs a connection it lost: each logger's filters see only its own records, not
# its children's.
PIKA_LOGGERS = (
    "pika.adapters.base_connection",
    "pika.adapters.blocking_connection",
    "pika.adapters.select_connection",
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.utils.selector_ioloop_adapter",
    "pika.channel",
    "pika.connection",
    "pika.heartbeat",
)
_HEARTBEAT_AFTER_CLOSE = "Received heartbeat frame without a heartbeat checker"
_LOSSES = (
    ConnectionError,  # reset by peer, broken pipe, aborted
    pika.exceptions.StreamLostError,
    pika.exceptions.ConnectionClosedByBroker,
    pika.exceptions.AMQPHeartbeatTimeout,
)


def _reports_a_loss(record: logging.LogRecord) -> bool:
    """Whether a pika record is about the connection going away (rather than, say, RabbitMQ
    refusing a connection or a channel error), judged by the exception it carries."""
    args = record.args if isinstance(record.args, tuple) else (record.args,)
    carried = [*args, record.exc_info[1] if record.exc_info else None]
    return any(isinstance(item, _LOSSES) for item in carried)


class _ConnectionLossLog(logging.Filter):
    """Turns pika's ERROR lines (three or four, with tracebacks) about a lost publishing
    connection into one WARNING for the process's lifetime, and DEBUG after.

    One filter for the whole process (``LOSS_LOG``), not one per broker: filters on pika's
    loggers see every broker's records, and a second broker's filter would swallow a line the
    first had already said.

    Losing an idle connection is expected (a broker restart, a load balancer's idle timeout)
    and the next publish reconnects: nothing an operator has to act on each time."""

    def __init__(self) -> None:
        super().__init__()
        self._said = False
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if record.getMessage() == _HEARTBEAT_AFTER_CLOSE:
            # A heartbeat RabbitMQ sent as it closed the connection, read after pika stopped its
            # checker: part of a loss (said below), not news of its own.
            logger.debug("pika (%s, was %s): %s", record.name, record.levelname, _HEARTBEAT_AFTER_CLOSE)
            return False
        if not _reports_a_loss(record):
            return True
        self.lost(f"pika ({record.name}, was {record.levelname}): {record.getMessage()}")
        return False

    def lost(self, detail: str) -> None:
        """A loss, seen by pika's logs or by the keeper: the WARNING the first time only."""
        with self._lock:
            first, self._said = not self._said, True
        if first:
            logger.warning(CONNECTION_LOST)
        logger.debug("%s", detail)

    def install(self) -> None:
        for name in PIKA_LOGGERS:
            logging.getLogger(name).addFilter(self)  # a no-op when already there

    def forget(self) -> None:
        """Say the next loss again (for tests that each expect their warning)."""
        with self._lock:
            self._said = False


LOSS_LOG = _ConnectionLossLog()


def _heartbeat_seconds(connection: pika.BlockingConnection | None, parameters: Any) -> float:
    """The connection's negotiated heartbeat timeout, else the one asked for, else RabbitMQ's
    default; 0 means heartbeats are off."""
    # pika keeps the negotiated value only on the connection it wraps.
    negotiated = getattr(getattr(getattr(connection, "_impl", None), "params", None), "heartbeat", None)
    if isinstance(negotiated, int):
        return float(negotiated)
    asked = [getattr(p, "heartbeat", None) for p in (parameters if isinstance(parameters, list) else [parameters])]
    values = [value for value in asked if isinstance(value, int)]
    return float(min(values)) if values else float(DEFAULT_HEARTBEAT_SECONDS)


class SharedConnectionBroker(RabbitmqBroker):
    """The web process's broker: one connection and channel for the whole process, one publish
    at a time.

    Dramatiq keeps a connection per thread (``threading.local``). Under gunicorn's gevent
    worker that local is per greenlet, that is per request: every upload would open a
    connection of its own and leave it open. A publish with confirms takes about a
    millisecond, so taking turns on one connection costs the API nothing it would notice.

    A BlockingConnection does its I/O, heartbeats included, only while it is used: between
    uploads RabbitMQ would see no heartbeat and drop it, and the next publish would meet a dead
    socket. A keeper (a daemon thread, a greenlet under gevent, started by the first publish)
    services the connection well within the heartbeat; a connection lost anyway is dropped
    and the next publish opens another, said once in the log (see ``_ConnectionLossLog``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = SimpleNamespace()  # type: ignore[assignment]
        # Made here, not at import: under gevent the patched (cooperative) lock and event are
        # wanted.
        self._publishing = threading.RLock()
        self._closing = threading.Event()
        self._keeper: threading.Thread | None = None
        LOSS_LOG.install()

    @property
    def keeper(self) -> threading.Thread | None:
        """The thread keeping the connection alive; None until the first publish."""
        return self._keeper

    def keepalive_seconds(self) -> float:
        """How often the keeper services the connection: a third of the heartbeat timeout (so
        that a late tick still beats RabbitMQ's two missed heartbeats), at most 10 s."""
        heartbeat = _heartbeat_seconds(getattr(self.state, "connection", None), self.parameters)
        return min(MAX_KEEPALIVE_SECONDS, heartbeat / 3) if heartbeat > 0 else MAX_KEEPALIVE_SECONDS

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        with self._publishing:
            self._start_keeper()
            return super().enqueue(message, delay=delay)

    def close(self) -> None:
        self._closing.set()
        with self._publishing:
            super().close()

    def _start_keeper(self) -> None:
        # Checked at each publish rather than once: a keeper does not survive a fork.
        if self._closing.is_set() or (self._keeper is not None and self._keeper.is_alive()):
            return
        self._keeper = threading.Thread(target=self._keep, name="rabbitmq-publishing-keeper", daemon=True)
        self._keeper.start()

    def _keep(self) -> None:
        while not self._closing.wait(self.keepalive_seconds()):
            with self._publishing:
                if not self._closing.is_set():
                    self._service()

    def _service(self) -> None:
        """Does the connection's pending I/O (heartbeats sent and received) without waiting;
        drops a connection found dead, so that the next publish opens a fresh one. Called with
        the publishing lock held."""
        connection: pika.BlockingConnection | None = getattr(self.state, "connection", None)
        if connection is None:
            return
        try:
            if connection.is_open:
                connection.process_data_events(time_limit=0)
                return
            LOSS_LOG.lost("Publishing connection found closed by the keeper")
        except (pika.exceptions.AMQPError, OSError) as error:
            LOSS_LOG.lost(f"Publishing connection found dead by the keeper: {error!r}")
        # Dramatiq's deleter drops the channel too and closes what is still open.
        del self.connection


def build_broker(settings: Settings, *, shared_connection: bool = False) -> RabbitmqBroker:
    """``shared_connection``: for the web process (see ``SharedConnectionBroker``); the workers
    keep Dramatiq's connection per thread, which their consumers rely on."""
    middleware = [
        AgeLimit(),
        # Dramatiq's defaults are a 10-minute limit and 20 retries; ours come from the settings.
        TimeLimit(time_limit=settings.job_time_limit_seconds * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=settings.max_retries, min_backoff=1000, max_backoff=30_000),
        CurrentMessage(),
    ]
    # Publisher confirms: a job is answered 202 only once RabbitMQ has taken its message.
    kind = SharedConnectionBroker if shared_connection else RabbitmqBroker
    return kind(url=settings.rabbitmq_url, middleware=middleware, confirm_delivery=True)

