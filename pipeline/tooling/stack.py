"""The service's processes for the integration tests, the chaos tests and the benchmark, started
one way.

- The commands are the Procfile's: each process runs as in production, with the port and the
  loopback address filled in; a caller names each option it changes (fewer gunicorn workers,
  more transcriber processes).
- Each process's environment is the caller's, less every variable the settings object reads
  (a stray ``API_KEYS`` or ``STORAGE_URL`` in the shell must not change what is tested) and
  Dramatiq's own ``dramatiq_*`` knobs, plus exactly the settings the caller asks for.
- Redis databases are claimed in one registry (database 0 of the shared Redis), one database
  at a time with ``SET NX``, so that parallel sessions (tests, benchmarks) never share one;
  claims of processes that died are taken back.
- Every process leads a session of its own: stopping one signals its main process (gunicorn
  and Dramatiq stop their children gracefully on SIGTERM) and then kills whatever is left in
  the session, so no worker outlives the stack. Started from the main thread, a process also
  gets SIGTERM should the caller itself die (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import redis
import requests

from pipeline.queues import TRANSCRIBE_QUEUE
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROCFILE = ROOT / "Procfile"
REDIS_HOST = "localhost"
REDIS_PORT = 6379
# Database 0 holds the claims (and is `make run`'s default); the others are handed out.
CLAIMABLE_DBS = range(1, 16)
CLAIM_PREFIX = "whisper-pipeline:claimed-db"
CLAIM_TTL_SECONDS = 12 * 3600
VHOST_PREFIX = "whisper-pipeline"
# Variables a process of the service reads that are not settings: Dramatiq's own.
FOREIGN_PREFIXES = ("dramatiq_", "PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
_PR_SET_PDEATHSIG = 1
TRANSCRIBER_MODULE = "pipeline.worker.transcriber"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- environment ---------------------------------------------------------------------------------

def setting_names() -> frozenset[str]:
    """The variables ``Settings.from_env`` reads."""
    return frozenset(f.name.upper() for f in fields(Settings))


def service_env(settings: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without any setting or Dramatiq knob,
    then ``settings``; the virtualenv's programs first on PATH, output unbuffered."""
    names = setting_names()
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k.upper() not in names and not k.startswith(FOREIGN_PREFIXES)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def drop_settings_from(environ: MutableMapping[str, str]) -> list[str]:
    """Remove every setting from ``environ`` (the test process's own); the names removed."""
    names = setting_names()
    dropped = sorted(k for k in environ if k.upper() in names)
    for name in dropped:
        del environ[name]
    return dropped


# -- the Procfile ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcessSpec:
    """One process of the Procfile: its program and arguments, and the variables its ``env``
    prefix sets."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def launcher(self) -> bool:
        """Whether this is ``python -m pipeline.worker.transcriber``, which sizes itself from
        ``TRANSCRIBER_PROCESSES``/``CPU_THREADS`` and passes what follows ``--`` to Dramatiq."""
        return self.argv[1:3] == ("-m", TRANSCRIBER_MODULE)

    @property
    def queues(self) -> frozenset[str]:
        """The Dramatiq queues it consumes (none for the web process)."""
        if self.launcher:
            return frozenset({TRANSCRIBE_QUEUE})
        if "--queues" not in self.argv:
            return frozenset()
        rest = self.argv[self.argv.index("--queues") + 1:]
        taken = []
        for arg in rest:
            if arg.startswith("-"):
                break
            taken.append(arg)
        return frozenset(taken)

    def with_options(self, **options: str | int) -> ProcessSpec:
        """The same command with ``--name value`` options replaced or added (``processes=2``)."""
        argv = list(self.argv)
        if self.launcher:
            # Dramatiq takes the last of a repeated option: after the launcher's own. The layout
            # itself is better set with TRANSCRIBER_PROCESSES and CPU_THREADS in the environment.
            if "--" not in argv:
                argv.append("--")
            for key, value in options.items():
                argv += ["--" + key.replace("_", "-"), str(value)]
            return replace(self, argv=tuple(argv))
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if flag in argv:
                argv[argv.index(flag) + 1] = str(value)
            else:
                # Options go before gunicorn's app spec and Dramatiq's modules alike.
                argv[1:1] = [flag, str(value)]
        return replace(self, argv=tuple(argv))

    def shown(self) -> str:
        prefix = " ".join(f"{k}={v}" for k, v in self.env.items())
        argv = [Path(self.argv[0]).name, *self.argv[1:]]
        return (f"env {prefix} " if prefix else "") + shlex.join(argv)


# A fixed port per process would collide between parallel stacks; the callers that want worker
# metrics set WORKER_METRICS_PORT themselves.
_DROPPED_PREFIX_VARIABLES = frozenset({"WORKER_METRICS_PORT"})
_PORT = re.compile(r"\$\{PORT(?::-[^}]*)?\}|\$PORT\b")


def read_procfile(port: int, path: Path = PROCFILE, host: str = "127.0.0.1") -> dict[str, ProcessSpec]:
    """The Procfile's processes, ``$PORT`` filled in, bound to ``host`` instead of every
    interface, programs taken from this virtualenv."""
    specs = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep:
            raise ValueError(f"{path}: not `name: command`: {line!r}")
        argv = shlex.split(_PORT.sub(str(port), command))
        env: dict[str, str] = {}
        if argv and argv[0] == "env":
            argv.pop(0)
            while argv and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
                key, value = argv.pop(0).split("=", 1)
                if key not in _DROPPED_PREFIX_VARIABLES:
                    env[key] = value
        program = BIN / argv[0]
        argv[0] = str(program) if program.exists() else argv[0]
        argv = [a.replace(f"0.0.0.0:{port}", f"{host}:{port}") for a in argv]
        specs[name.strip()] = ProcessSpec(name.strip(), tuple(argv), env)
    for needed in ("web", "worker", "transcriber"):
        if needed not in specs:
            raise ValueError(f"{path} has no {needed!r} process")
    return specs


# -- Redis databases --------------------------------------------------------------------------------

def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_gone(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not alive(int(pid))


def claim_redis_db(purpose: str, prefer: int | None = None, registry: redis.Redis | None = None) -> int:
    """A database of the shared Redis that no other session on this machine uses, flushed,
    recorded as this process's in database 0 until ``release_redis_db``."""
    client = registry or redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0, decode_responses=True)
    try:
        order = [prefer] if prefer is not None else []
        order += [db for db in CLAIMABLE_DBS if db != prefer]
        for db in order:
            if db not in CLAIMABLE_DBS:
                raise ValueError(f"Redis database {db} is not one of {CLAIMABLE_DBS.start}-{CLAIMABLE_DBS.stop - 1}")
            key = f"{CLAIM_PREFIX}:{db}"
            value = f"{_owner()}:{purpose}"
            if not client.set(key, value, nx=True, ex=CLAIM_TTL_SECONDS):
                holder = client.get(key)
                if holder is None or not _owner_is_gone(str(holder).rsplit(":", 1)[0]):
                    continue
                # Compare-and-delete, so that two sessions taking back one dead claim cannot
                # both succeed: only the one whose SET NX follows wins.
                with client.pipeline() as pipe:
                    try:
                        pipe.watch(key)
                        if pipe.get(key) != holder:
                            continue
                        pipe.multi()
                        pipe.delete(key)
                        pipe.execute()
                    except redis.WatchError:
                        continue
                if not client.set(key, value, nx=True, ex=CLAIM_TTL_SECONDS):
                    continue
            db_client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
            try:
                db_client.flushdb()
            finally:
                db_client.close()
            return db
        raise RuntimeError(f"every Redis database {CLAIMABLE_DBS.start}-{CLAIMABLE_DBS.stop - 1} is claimed "
                           f"(see the keys {CLAIM_PREFIX}:* in database 0)")
    finally:
        if registry is None:
            client.close()


def release_redis_db(db: int) -> None:
    """Flush a database this process claimed and give it back."""
    db_client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    registry = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0, decode_responses=True)
    try:
        db_client.flushdb()
        key = f"{CLAIM_PREFIX}:{db}"
        holder = registry.get(key)
        if holder is not None and str(holder).startswith(_owner() + ":"):
            registry.delete(key)
    finally:
        db_client.close()
        registry.close()


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


@contextlib.contextmanager
def redis_database(purpose: str, prefer: int | None = None) -> Iterator[int]:
    db = claim_redis_db(purpose, prefer)
    try:
        yield db
    finally:
        release_redis_db(db)


# -- RabbitMQ virtual hosts -------------------------------------------------------------------------

def rabbitmqctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


@functools.cache
def remove_stale_vhosts() -> None:
    """Virtual hosts of sessions that died before they could remove theirs: looked for once a
    process (a rabbitmqctl call boots an Erlang VM, about 0.7 CPU seconds), since a session's
    own hosts are removed as it goes."""
    listed = rabbitmqctl("list_vhosts", "name")
    for name in listed.stdout.split():
        pid = name.rsplit("-", 1)[-1]
        if name.startswith(VHOST_PREFIX + "-") and pid.isdigit() and not alive(int(pid)):
            rabbitmqctl("delete_vhost", name)


@contextlib.contextmanager
def rabbitmq_vhost(purpose: str, user: str = "guest") -> Iterator[str]:
    """A virtual host on the shared RabbitMQ made for this process and removed afterwards;
    yields its AMQP URL."""
    if shutil.which("rabbitmqctl") is None:
        raise RuntimeError("rabbitmqctl is not installed: a private virtual host cannot be made")
    remove_stale_vhosts()
    vhost = f"{VHOST_PREFIX}-{purpose}-{os.getpid()}"
    for args in (("add_vhost", vhost), ("set_permissions", "-p", vhost, user, ".*", ".*", ".*")):
        done = rabbitmqctl(*args)
        if done.returncode != 0:
            rabbitmqctl("delete_vhost", vhost)
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    try:
        yield f"amqp://{user}:{user}@localhost:5672/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


# -- processes ----------------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a live process; None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields_ = raw[raw.rindex(")") + 2:].split()
    if fields_[0] == "Z":
        return None
    return int(fields_[1]), int(fields_[3])


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def alive(pid: int) -> bool:
    return _stat(pid) is not None


def children_of(pid: int) -> list[int]:
    return sorted(p for p in _all_pids() if (stat := _stat(p)) and stat[0] == pid)


def descendants(pids: Iterable[int]) -> set[int]:
    """``pids`` that are alive, and every live process below them."""
    parents = {p: stat[0] for p in _all_pids() if (stat := _stat(p))}
    found = {p for p in pids if p in parents}
    while new := {p for p, parent in parents.items() if parent in found and p not in found}:
        found |= new
    return found


def session_members(session: int) -> list[int]:
    return [p for p in _all_pids() if (stat := _stat(p)) and stat[1] == session and p != os.getpid()]


def _kill_session(session: int) -> None:
    # By member rather than killpg: once the leader is reaped, its number could in principle
    # name someone else's group.
    for pid in session_members(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Service:
    """The processes of one stack, each in a session of its own, so that each can be stopped,
    killed and started again; every start appends to ``logs/<name>.log``."""

    def __init__(self, specs: Mapping[str, ProcessSpec], env: Mapping[str, str], logs: Path) -> None:
        self.specs = dict(specs)
        self.env = dict(env)
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.sessions: set[int] = set()  # every session we started, for the final sweep
        self.restarts: dict[str, int] = {}

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        """Start one process, with ``env`` on top of the stack's environment."""
        assert not self.running(name), f"{name} is already running"
        spec = self.specs[name]
        main_thread = threading.current_thread() is threading.main_thread()
        with self.log_path(name).open("ab") as log_file:
            proc = subprocess.Popen(
                list(spec.argv), cwd=ROOT, env={**self.env, **spec.env, **env}, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
                # The death signal is tied to the thread that forks: only the main thread's
                # lifetime is the caller's.
                preexec_fn=_die_with_parent if main_thread else None)
        self.procs[name] = proc
        self.sessions.add(proc.pid)
        self.restarts[name] = self.restarts.get(name, -1) + 1
        return proc

    def start_all(self) -> None:
        for name in self.specs:
            self.start(name)

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def pids(self) -> set[int]:
        """Every live process of the stack, workers included."""
        return descendants(p.pid for p in self.procs.values())

    def exited(self) -> dict[str, int]:
        """The processes that have exited, with their exit codes."""
        return {name: code for name, proc in self.procs.items() if (code := proc.poll()) is not None}

    def _signal(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def stop(self, name: str, grace: float = 30, *, signalled: bool = False) -> None:
        """SIGTERM to the main process (gunicorn and Dramatiq stop their children gracefully on
        it), then SIGKILL to whatever is left of its session after ``grace`` seconds."""
        proc = self.procs.get(name)
        if proc is None:
            return
        if not signalled:  # a second SIGTERM makes Dramatiq kill its workers at once
            self._signal(name)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (proc.poll() is None or session_members(proc.pid)):
            time.sleep(0.1)
        _kill_session(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def ensure(self) -> list[str]:
        """Start what is not running (as a supervisor's restart policy would); the names."""
        started = []
        for name in self.specs:
            if not self.running(name):
                if name in self.procs:
                    _kill_session(self.procs[name].pid)
                self.start(name)
                started.append(name)
        return started

    def replace(self, name: str, spec: ProcessSpec, **env: str) -> subprocess.Popen[bytes]:
        """Stop a process and start ``spec`` in its place."""
        self.stop(name)
        self.specs[name] = spec
        return self.start(name, **env)

    def stop_all(self, grace: float = 20) -> None:
        for name in self.procs:
            self._signal(name)
        for name in list(self.procs):
            self.stop(name, grace, signalled=True)
        for session in self.sessions:
            _kill_session(session)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_path(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def wait_ready(self, url: str, timeout: float = 120, ready: Callable[[dict[str, Any]], bool] | None = None,
                   http: requests.Session | None = None) -> None:
        """Until the API answers /api/health with 200 and every queue of the stack is served
        (and ``ready(health)``, where given); fails at once when a process exits."""
        queues: frozenset[str] = frozenset().union(*(s.queues for s in self.specs.values()))
        get = (http or requests).get
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if exited := self.exited():
                name, code = next(iter(exited.items()))
                raise RuntimeError(f"{name} exited ({code}); logs in {self.logs}:\n{self.log_tail(name)}")
            try:
                response = get(url + "/api/health", timeout=15)
                body = response.json()
                if (response.status_code == 200 and queues <= set(body.get("queues_served", []))
                        and (ready is None or ready(body))):
                    return
                last = f"{response.status_code} {body}"
            except (requests.RequestException, ValueError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stack is not ready after {timeout} s ({last}); logs in {self.logs}")
            time.sleep(0.3)
