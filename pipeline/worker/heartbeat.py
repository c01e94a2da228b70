"""Each worker process's heartbeat: its record (host, pid, queues, device, GPUs, jobs done,
busy threads) written every few seconds, read through pipeline/workers.py."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from pipeline.keys import WORKERS_RECORDS_KEY, WORKERS_SEEN_KEY
from pipeline.worker.gpu import read_metrics
from pipeline.workers import INTERVAL_SECONDS, TTL_SECONDS, forget_worker, worker_member

log = logging.getLogger(__name__)

# KEYS: seen, records. ARGV: member, record json, ttl
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
for _, member in ipairs(dead) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
redis.call('EXPIRE', KEYS[1], ttl * 4)
redis.call('EXPIRE', KEYS[2], ttl * 4)
return #dead
"""


class Heartbeat(Middleware):
    """Publishes this worker process's record: host, pid, queues, device, GPUs, jobs done."""

    def __init__(self, describe: Callable[[], dict[str, Any]], client: Callable[[], redis.Redis]) -> None:
        self._describe = describe
        self._client = client
        self._stop = threading.Event()
        self._queues: list[str] = []
        self._jobs_done = 0
        # Messages running now, by id: pipeline.worker.split reads threads - busy as idle capacity.
        self._running: set[str] = set()
        self._threads = 1
        self._wake = threading.Event()
        self._started = time.time()
        self._lock = threading.Lock()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = getattr(worker, "consumer_whitelist", None)  # --queues; else all declared
        self._queues = sorted(queues or broker.get_declared_queues())
        self._threads = int(getattr(worker, "worker_threads", 1) or 1)
        self._started = time.time()
        threading.Thread(target=self._run, name="heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        self._wake.set()
        try:
            forget_worker(self._client(), socket.gethostname(), os.getpid())
        except redis.RedisError:
            pass

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._running.add(message.message_id)
        self._wake.set()  # published at once, not within INTERVAL_SECONDS

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        with self._lock:
            self._jobs_done += 1
            self._running.discard(message.message_id)
        self._wake.set()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._running.discard(message.message_id)
        self._wake.set()

    def record(self) -> dict[str, Any]:
        gpus = read_metrics()
        with self._lock:
            done = self._jobs_done
            busy = len(self._running)
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": [q for q in self._queues if not q.endswith((".DQ", ".XQ"))],
            "gpus": [g.to_dict() for g in gpus],
            "jobs_done": done,
            "threads": self._threads,
            "busy": busy,
            "started_at": self._started,
            "seen_at": time.time(),
            **self._describe(),
        }

    def beat(self) -> None:
        record = self.record()
        self._client().eval(_BEAT, 2, WORKERS_SEEN_KEY, WORKERS_RECORDS_KEY,
                            worker_member(record["host"], record["pid"]), json.dumps(record), TTL_SECONDS)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat must not kill the worker
                log.warning("heartbeat failed: %s", exc)
            self._wake.wait(INTERVAL_SECONDS)
            self._wake.clear()
