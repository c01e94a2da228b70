"""The worker's periodic chores: webhook deliveries that are due, stuck jobs, Redis and disk
pruning. A daemon thread in every worker process, started by a Dramatiq middleware.

Webhooks are swept by every process every WEBHOOK_SWEEP_SECONDS (each entry is claimed on its
own, so they share the work). The reconciler and the pruning run in one process at a time,
at most once every RECONCILE_PERIOD_SECONDS across all of them: a throttle key with that TTL
says when it last ran, and a redis-py ``Lock`` with a timeout keeps a slow run from
overlapping the next (a holder that dies frees it when the timeout runs out).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
import redis
from dramatiq.middleware import Middleware

from pipeline import hygiene, outbox, uploads
from pipeline.keys import HOUSEKEEPING_LOCK_KEY, HOUSEKEEPING_RAN_KEY
from pipeline.stores import Stores
from pipeline.worker import reconciler

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Chores:
    """What the exclusive part of a tick did."""

    report: reconciler.Report
    queued_pruned: int
    files_pruned: int


class Runner:
    """One tick at a time; the middleware calls ``tick`` from its thread, tests call it directly."""

    def __init__(self, stores: Stores, send: reconciler.Send,
                 backlog: reconciler.Backlog | None = None) -> None:
        self.stores, self.send, self.backlog = stores, send, backlog
        self._next_sweep = 0.0
        self._next_exclusive = 0.0
        self._me = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def interval(self) -> float:
        s = self.stores.settings
        return float(min(s.webhook_sweep_seconds, s.reconcile_period_seconds))

    def tick(self, now: float | None = None) -> Chores | None:
        now = time.time() if now is None else now
        settings = self.stores.settings
        if now >= self._next_sweep:
            self._next_sweep = now + settings.webhook_sweep_seconds
            try:
                outbox.sweep(self.stores)
            except redis.RedisError:
                raise
            except Exception:  # webhooks never keep the reconciler and pruning from running
                log.exception("webhook sweep failed")
        if now < self._next_exclusive:
            return None
        self._next_exclusive = now + settings.reconcile_period_seconds
        return self.run_exclusive(now)

    def run_exclusive(self, now: float | None = None, *, force: bool = False) -> Chores | None:
        """Reconcile and prune, unless another process did within the period or does now."""
        period = self.stores.settings.reconcile_period_seconds
        client = self.stores.redis
        if not force and not client.set(HOUSEKEEPING_RAN_KEY, self._me, nx=True, ex=period):
            return None
        lock = client.lock(HOUSEKEEPING_LOCK_KEY, timeout=max(60, 4 * period), blocking=False)
        if not lock.acquire():
            return None
        try:
            report = reconciler.reconcile(self.stores, self.send, backlog=self.backlog, now=now)
            if report.resent or report.failed or report.webhooks:
                log.info("reconciler: %s", reconciler.summary(report))
            queued = hygiene.prune_queued(client)
            files = self.stores.cache.prune_disk()
            uploads.janitor(self.stores)  # stored files whose job is final or gone
            return Chores(report, queued, files)
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                log.warning("housekeeping ran past its lock's timeout")


class Housekeeping(Middleware):
    """Starts the runner's thread in each worker process once it has booted."""

    def __init__(self, stores: Callable[[], Stores]) -> None:
        self._stores = stores
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        threading.Thread(target=self._run, args=(broker,), name="housekeeping", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def _run(self, broker: dramatiq.Broker) -> None:
        runner: Runner | None = None
        failing = False
        while not self._stop.is_set():
            try:
                if runner is None:
                    runner = Runner(self._stores(), reconciler.broker_sender(broker),
                                    reconciler.broker_backlog(broker))
                runner.tick()
                if failing:
                    log.info("housekeeping works again")
                failing = False
            except Exception as exc:  # noqa: BLE001 - the next tick may succeed (Redis back)
                if not failing:  # said once, not every few seconds while Redis is away
                    log.warning("housekeeping failed: %s", exc)
                failing = True
            self._stop.wait(runner.interval if runner is not None else 5.0)
