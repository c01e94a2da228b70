"""A private copy of the real service for the benchmark.

The processes are the Procfile's, started by pipeline/tooling/stack.py as the tests start theirs:
on a RabbitMQ virtual host made for this run and a Redis database claimed in the one registry
the tests use, so that neither a ``make run`` nor a test session on the machine sees its jobs.
``close()`` stops every process, removes the virtual host, flushes and releases the database
and deletes the run's uploads folder; it runs on any exit, Ctrl-C included, and the processes
die with the benchmark even when it is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pika
import redis

from bench.client import BenchError, Client
from pipeline.keys import job_history_key, job_key
from pipeline.tooling.stack import (
    ROOT,
    ProcessSpec,
    Service,
    claim_redis_db,
    descendants,
    free_port,
    rabbitmq_vhost,
    read_procfile,
    redis_url,
    release_redis_db,
    service_env,
    setting_names,
)
from pipeline.worker.layout import resolve

__all__ = ["ROOT", "Stack"]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return sorted(descendants({pid}) - {pid})


def _cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / CLK_TCK


def pss(pid: int) -> float:
    """Proportional set size of ``pid`` in MiB: shared pages split among the processes sharing
    them, so the sum over a stack is what the stack costs the machine (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used (all cores, not idle or waiting)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


class Stack:
    def __init__(self, run_dir: Path, model_dir: Path, *, redis_db: int | None, extra_env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.model_dir = model_dir
        self.prefer_db = redis_db
        self.extra_env = extra_env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = Client(self.url)
        self.commands: dict[str, ProcessSpec] = read_procfile(self.port)
        self.service: Service | None = None
        self.db: int | None = None
        self.vhost: str | None = None
        self.redis: redis.Redis | None = None
        # processes, CPU_THREADS: the layout the launcher picks on this machine (`make run`'s)
        default = resolve(0, 0, device="cpu")
        self.transcriber = (default.processes, default.threads)
        self._vhost: contextlib.ExitStack | None = None

    # -- set-up -----------------------------------------------------------------------------
    def settings(self, **overrides: str) -> dict[str, str]:
        assert self.db is not None and self.vhost is not None
        return {
            "REDIS_URL": redis_url(self.db),
            "RABBITMQ_URL": f"amqp://guest:guest@localhost:5672/{self.vhost}",
            "UPLOAD_DIR": str(self.run_dir / "uploads"),
            "CACHE_DIR": str(self.run_dir / "cache"),
            "MODEL_DIR": str(self.model_dir),
            "DEVICE": "cpu",
            # CPU_THREADS is left to `auto`, as `make run` leaves it: the live worker's and the
            # diarizer's engines then get the thread count the layout gives each process.
            **self.extra_env,
            **overrides,
        }

    def settings_shown(self) -> dict[str, str]:
        names = setting_names()
        return {k: v for k, v in sorted(self.settings().items()) if k in names}

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.db = claim_redis_db("bench", self.prefer_db)
        self.redis = redis.Redis.from_url(redis_url(self.db), decode_responses=True)
        self._vhost = contextlib.ExitStack()
        try:
            url = self._vhost.enter_context(rabbitmq_vhost("bench"))
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from exc
        self.vhost = url.rsplit("/", 1)[1]
        pika.BlockingConnection(pika.URLParameters(url)).close()
        self.commands["transcriber"] = self._transcriber_spec()
        self.service = Service(self.commands, service_env(self.settings()), self.run_dir / "logs")
        self.service.start("web")
        self.service.start("worker")
        if "diarizer" in self.commands:  # the diarize queue's process: every queue is served
            self.service.start("diarizer")
        if "live" in self.commands:  # realtime sessions
            self.service.start("live")
        self._start_transcriber()
        self.wait_ready()

    def _transcriber_spec(self) -> ProcessSpec:
        return self.commands["transcriber"].with_options(processes=self.transcriber[0])

    def _start_transcriber(self) -> None:
        assert self.service is not None
        self.service.start("transcriber", CPU_THREADS=str(self.transcriber[1]))

    def transcriber_command(self) -> str:
        return f"CPU_THREADS={self.transcriber[1]} {self._transcriber_spec().shown()}"

    def restart_transcriber(self, processes: int, cpu_threads: int) -> None:
        """Replace the transcriber with ``processes`` processes of ``cpu_threads`` threads each."""
        assert self.service is not None
        self.transcriber = (processes, cpu_threads)
        self.commands["transcriber"] = self._transcriber_spec()
        self.service.replace("transcriber", self.commands["transcriber"], CPU_THREADS=str(cpu_threads))
        self.wait_ready()

    def transcribe_workers(self) -> list[dict[str, Any]]:
        workers = self.client.get("/api/gpu-status")["workers"]
        mine = self.pids()
        return [w for w in workers if "transcribe" in (w.get("queues") or []) and w.get("pid") in mine]

    def wait_ready(self, timeout: float = 120.0) -> None:
        """The API answers, every queue is served, and every transcriber process of this stack
        has sent a heartbeat."""
        assert self.service is not None

        def transcribers_beat(health: dict[str, Any]) -> bool:
            try:
                return len(self.transcribe_workers()) >= self.transcriber[0]
            except BenchError:
                return False

        try:
            self.service.wait_ready(self.url, timeout, ready=transcribers_beat)
        except RuntimeError as exc:
            raise BenchError(str(exc)) from exc

    def log_tail(self, name: str, lines: int = 30) -> str:
        return self.service.log_tail(name, lines) if self.service is not None else ""

    # -- what the benchmark reads ---------------------------------------------------------
    def api_workers(self) -> list[int]:
        assert self.service is not None
        return children(self.service.pid("web"))

    def pids(self) -> set[int]:
        return self.service.pids() if self.service is not None else set()

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by every process of the stack (not the shared servers)."""
        return sum(_cpu(pid) for pid in self.pids())

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds used so far by each Procfile process (its children included)."""
        assert self.service is not None
        return {name: sum(_cpu(pid) for pid in (self.service.pid(name), *children(self.service.pid(name))))
                for name in self.commands if self.service.running(name)}

    def pss(self) -> float:
        """MiB of memory the whole stack holds (its processes' PSS, not the shared servers')."""
        return sum(pss(pid) for pid in self.pids())

    def job_field(self, task_id: str, name: str) -> str | None:
        assert self.redis is not None
        value = self.redis.hget(job_key(task_id), name)
        return None if value is None else str(value)

    def history(self, task_id: str) -> list[dict[str, float | str]]:
        assert self.redis is not None
        return [json.loads(x) for x in self.redis.lrange(job_history_key(task_id), 0, -1)]  # type: ignore[union-attr]

    # -- tear-down --------------------------------------------------------------------------
    def close(self) -> None:
        if self.service is not None:
            self.service.stop_all()
            self.service = None
        if self._vhost is not None:
            self._vhost.close()
            self._vhost = None
            self.vhost = None
        if self.redis is not None:
            self.redis.close()
            self.redis = None
        if self.db is not None:
            release_redis_db(self.db)
            self.db = None
        shutil.rmtree(self.run_dir / "uploads", ignore_errors=True)
        shutil.rmtree(self.run_dir / "cache", ignore_errors=True)
