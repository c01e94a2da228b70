"""A private copy of the real service for the benchmark.

The processes are the Procfile's (gunicorn, the extract/notify worker, the transcriber), run
as subprocesses with ``WORKER_METRICS_PORT`` left out, on a RabbitMQ virtual host made for
this run with ``rabbitmqctl`` and a Redis database claimed the way the tests claim theirs
(``tests/conftest.py``), so that neither a ``make run`` nor a test session on the machine
sees its jobs. ``close()`` stops every process, removes the virtual host, flushes and
releases the database and deletes the run's uploads folder; it runs on any exit, Ctrl-C
included, and the processes die with the benchmark even when it is killed (PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

import pika
import redis

from bench.client import BenchError, Client
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLAIM_KEY = "whisper-pipeline-test-session"  # the tests' registry in database 0: they skip ours
CLAIM_VALUE = "bench:{pid}"
VHOST_PREFIX = "whisper-pipeline-bench-"
SETTING_NAMES = {f.name.upper() for f in fields(Settings)}
PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Command:
    env: dict[str, str]
    argv: list[str]

    def shown(self) -> str:
        prefix = " ".join(f"{k}={v}" for k, v in self.env.items())
        argv = [Path(self.argv[0]).name, *self.argv[1:]]
        return (f"env {prefix} " if prefix else "") + shlex.join(argv)


def procfile(path: Path, port: int) -> dict[str, Command]:
    """The Procfile's commands: ``${PORT:-…}`` filled in, bound to loopback, the ``env`` prefix
    parsed into variables (WORKER_METRICS_PORT dropped), programs taken from the virtualenv."""
    commands = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
            continue
        name, command = line.split(":", 1)
        command = command.replace("${PORT:-8511}", str(port)).replace("$PORT", str(port))
        argv = shlex.split(command)
        env: dict[str, str] = {}
        if argv and argv[0] == "env":
            argv.pop(0)
            while argv and "=" in argv[0] and not argv[0].startswith("-"):
                key, value = argv.pop(0).split("=", 1)
                if key != "WORKER_METRICS_PORT":
                    env[key] = value
        argv = [str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0], *argv[1:]]
        argv = [a.replace(f"0.0.0.0:{port}", f"127.0.0.1:{port}") for a in argv]
        commands[name.strip()] = Command(env, argv)
    for needed in ("web", "worker", "transcriber"):
        if needed not in commands:
            raise SystemExit(f"{path} has no {needed!r} process")
    return commands


def with_processes(command: Command, processes: int) -> Command:
    argv = list(command.argv)
    if "--processes" in argv:
        argv[argv.index("--processes") + 1] = str(processes)
    else:
        argv += ["--processes", str(processes)]
    return Command(command.env, argv)


def claim_redis_db(registry: redis.Redis, prefer: int | None) -> int:
    """A database no test session or other benchmark uses, recorded in the tests' registry.
    Claims of benchmarks that died without releasing theirs are taken back first."""
    for key in registry.scan_iter(match=f"{CLAIM_KEY}:*"):
        value = registry.get(key)
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text.startswith("bench:") and not _alive(int(text.split(":", 1)[1])):
            db = int(key.decode().rsplit(":", 1)[1] if isinstance(key, bytes) else str(key).rsplit(":", 1)[1])
            redis.Redis(db=db).flushdb()
            registry.delete(key)
    order = ([prefer] if prefer else []) + [db for db in (11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 12, 13)
                                             if db != prefer]
    for db in order:
        if registry.set(f"{CLAIM_KEY}:{db}", CLAIM_VALUE.format(pid=os.getpid()), nx=True, ex=12 * 3600):
            return db
    raise SystemExit("every Redis database 1-13 is claimed; pass --redis-db with a free one")


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120)


def remove_stale_vhosts() -> None:
    """Virtual hosts of earlier benchmarks that were killed before they could remove theirs."""
    listed = _rabbitmqctl("list_vhosts", "name")
    for name in listed.stdout.split():
        if name.startswith(VHOST_PREFIX) and name[len(VHOST_PREFIX):].isdigit() \
                and not _alive(int(name[len(VHOST_PREFIX):])):
            _rabbitmqctl("delete_vhost", name)


def descendants(pids: set[int]) -> set[int]:
    """``pids`` and every process below them."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = set(pids)
    grew = True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in found and pid not in found}
        found |= new
        grew = bool(new)
    return {pid for pid in found if pid in parents}


def children(pid: int) -> list[int]:
    return sorted(descendants({pid}) - {pid})


class Stack:
    def __init__(self, run_dir: Path, model_dir: Path, *, redis_db: int | None, extra_env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.model_dir = model_dir
        self.prefer_db = redis_db
        self.extra_env = extra_env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = Client(self.url)
        self.commands = procfile(ROOT / "Procfile", self.port)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self.db: int | None = None
        self.vhost: str | None = None
        self.redis: redis.Redis | None = None
        self.transcriber = (1, 2)  # processes, CPU_THREADS
        self._starts = 0

    # -- set-up -----------------------------------------------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
        base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
        base["PYTHONUNBUFFERED"] = "1"
        assert self.db is not None and self.vhost is not None
        settings = {
            "REDIS_URL": f"redis://localhost:6379/{self.db}",
            "RABBITMQ_URL": f"amqp://guest:guest@localhost:5672/{self.vhost}",
            "UPLOAD_DIR": str(self.run_dir / "uploads"),
            "CACHE_DIR": str(self.run_dir / "cache"),
            "MODEL_DIR": str(self.model_dir),
            "DEVICE": "cpu",
            "CPU_THREADS": "2",
            **self.extra_env,
            **overrides,
        }
        return {**base, **settings}

    def settings_shown(self) -> dict[str, str]:
        env = self.env()
        return {k: env[k] for k in sorted(env) if k in SETTING_NAMES}

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        registry = redis.Redis(db=0)
        try:
            self.db = claim_redis_db(registry, self.prefer_db)
        finally:
            registry.close()
        self.redis = redis.Redis(db=self.db, decode_responses=True)
        self.redis.flushdb()
        if shutil.which("rabbitmqctl") is None:
            raise SystemExit("rabbitmqctl is not installed: the benchmark makes its own RabbitMQ virtual host")
        remove_stale_vhosts()
        vhost = f"{VHOST_PREFIX}{os.getpid()}"
        for args in (("add_vhost", vhost), ("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")):
            done = _rabbitmqctl(*args)
            if done.returncode != 0:
                raise SystemExit(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
            self.vhost = vhost
        pika.BlockingConnection(pika.URLParameters(self.env()["RABBITMQ_URL"])).close()
        for name in ("web", "worker"):
            self._spawn(name, self.commands[name], {})
        self._spawn_transcriber()
        self.wait_ready()

    def _spawn(self, name: str, command: Command, overrides: dict[str, str]) -> None:
        self._starts += 1
        log = (self.run_dir / "logs" / f"{name}-{self._starts}.log").open("wb")
        self._logs.append(log)
        env = {**self.env(**overrides), **command.env}
        self.procs[name] = subprocess.Popen(command.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=_die_with_parent)

    def _spawn_transcriber(self) -> None:
        processes, threads = self.transcriber
        self._spawn("transcriber", with_processes(self.commands["transcriber"], processes),
                    {"CPU_THREADS": str(threads)})

    def transcriber_command(self) -> str:
        processes, threads = self.transcriber
        command = with_processes(self.commands["transcriber"], processes)
        return f"CPU_THREADS={threads} {command.shown()}"

    def restart_transcriber(self, processes: int, cpu_threads: int) -> None:
        """Replace the transcriber with ``processes`` processes of ``cpu_threads`` threads each."""
        old = self.procs.pop("transcriber")
        _stop(old)
        self.transcriber = (processes, cpu_threads)
        self._spawn_transcriber()
        self.wait_ready()

    def transcribe_workers(self) -> list[dict[str, Any]]:
        workers = self.client.get("/api/gpu-status")["workers"]
        mine = descendants({p.pid for p in self.procs.values()})
        return [w for w in workers if "transcribe" in (w.get("queues") or []) and w.get("pid") in mine]

    def wait_ready(self, timeout: float = 120.0) -> None:
        """The API answers, and every worker process of this stack has sent a heartbeat."""
        deadline = time.monotonic() + timeout
        want = self.transcriber[0]
        last = "nothing"
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise BenchError(f"the {name} process exited ({proc.returncode}); logs: {self.run_dir / 'logs'}\n"
                                     + self.log_tail(name))
            try:
                health = self.client.get("/api/health")
                served = set(health.get("queues_served", []))
                if {"extract", "notify", "transcribe"} <= served and len(self.transcribe_workers()) >= want:
                    return
                last = str(health)
            except (OSError, BenchError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise BenchError(f"the stack did not become ready in {timeout:.0f} s ({last}); logs: {self.run_dir / 'logs'}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        logs = sorted((self.run_dir / "logs").glob(f"{name}-*.log"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return ""
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])

    # -- what the benchmark reads ---------------------------------------------------------
    def api_workers(self) -> list[int]:
        return children(self.procs["web"].pid)

    def pids(self) -> set[int]:
        return descendants({p.pid for p in self.procs.values()})

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by every process of the stack (not the shared servers)."""
        total = 0
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(stat[11]) + int(stat[12])
        return total / CLK_TCK

    def job_field(self, task_id: str, name: str) -> str | None:
        assert self.redis is not None
        value = self.redis.hget(f"wp:job:{task_id}", name)
        return None if value is None else str(value)

    def history(self, task_id: str) -> list[dict[str, float | str]]:
        import json

        assert self.redis is not None
        return [json.loads(x) for x in self.redis.lrange(f"wp:job:{task_id}:history", 0, -1)]  # type: ignore[union-attr]

    # -- tear-down --------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            _stop(proc)
        self.procs.clear()
        for log in self._logs:
            log.close()
        if self.vhost is not None:
            _rabbitmqctl("delete_vhost", self.vhost)
            self.vhost = None
        if self.db is not None:
            client = redis.Redis(db=self.db)
            client.flushdb()
            client.close()
            registry = redis.Redis(db=0)
            if registry.get(f"{CLAIM_KEY}:{self.db}") == CLAIM_VALUE.format(pid=os.getpid()).encode():
                registry.delete(f"{CLAIM_KEY}:{self.db}")
            registry.close()
            self.db = None
        if self.redis is not None:
            self.redis.close()
            self.redis = None
        shutil.rmtree(self.run_dir / "uploads", ignore_errors=True)
        shutil.rmtree(self.run_dir / "cache", ignore_errors=True)


def group_members(pgid: int) -> list[int]:
    """Processes whose process group is ``pgid`` (a group that a process of ours leads)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == pgid:
                    members.append(int(entry))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    # By member rather than killpg: once the leader is reaped and the group is empty, its
    # number could in principle name someone else's group.
    for pid in group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _stop(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM to the process's group (it leads its own session), SIGKILL after ``grace``."""
    _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if not group_members(proc.pid):
            break
        time.sleep(0.1)
    # Worker children may outlive a parent that exited: what is left of the group goes.
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
