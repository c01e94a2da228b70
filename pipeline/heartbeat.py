"""Worker heartbeats in Redis: what the API knows about workers, on this host or others.

Each worker process writes one short-lived record every few seconds; a record that stops
being refreshed expires, so a dead worker disappears from /api/health and /api/gpu-status on
its own.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import dramatiq
import redis
from dramatiq.middleware import Middleware

from pipeline.gpu import read_metrics

log = logging.getLogger(__name__)

PREFIX = "wp:workers"
INTERVAL_SECONDS = 5.0
TTL_SECONDS = 15


def worker_key(host: str, pid: int) -> str:
    return f"{PREFIX}:{host}:{pid}"


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    keys = sorted(cast(list[str], list(client.scan_iter(match=f"{PREFIX}:*", count=500))))
    if not keys:
        return []
    values = cast(list[str | None], client.mget(keys))
    return [json.loads(v) for v in values if v]


class Heartbeat(Middleware):
    """Publishes this worker process's record: host, pid, queues, device, GPUs, jobs done."""

    def __init__(self, describe: Callable[[], dict[str, Any]], client: Callable[[], redis.Redis]) -> None:
        self._describe = describe
        self._client = client
        self._stop = threading.Event()
        self._queues: list[str] = []
        self._jobs_done = 0
        self._started = time.time()
        self._lock = threading.Lock()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = getattr(worker, "consumer_whitelist", None)  # --queues; else all declared
        self._queues = sorted(queues or broker.get_declared_queues())
        self._started = time.time()
        threading.Thread(target=self._run, name="heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        try:
            self._client().delete(worker_key(socket.gethostname(), os.getpid()))
        except redis.RedisError:
            pass

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        with self._lock:
            self._jobs_done += 1

    def record(self) -> dict[str, Any]:
        gpus = read_metrics()
        with self._lock:
            done = self._jobs_done
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": [q for q in self._queues if not q.endswith((".DQ", ".XQ"))],
            "gpus": [g.to_dict() for g in gpus],
            "jobs_done": done,
            "started_at": self._started,
            "seen_at": time.time(),
            **self._describe(),
        }

    def beat(self) -> None:
        record = self.record()
        self._client().set(worker_key(record["host"], record["pid"]), json.dumps(record),
                           ex=TTL_SECONDS)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat must not kill the worker
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(INTERVAL_SECONDS)
