"""Chaos tests: the real service on a Redis and a RabbitMQ of the session's own, which the tests
kill and restart.

They never touch the machine's shared Redis (6379) or RabbitMQ (5672): a private
``redis-server`` and a private RabbitMQ node (own node name, ports, data and log folders, Erlang
cookie) are started for the session, the API and workers point at them, and everything started
here is stopped at the end, also when a test fails.

The folder is skipped unless ``CHAOS=1`` (``make chaos`` sets it): a plain ``pytest`` (and so
``make test``) does not even import the test modules.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import wave
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pika
import pytest
import redis
import requests

from pipeline import keys
from pipeline.settings import Settings
from pipeline.tooling.stack import Service, alive, children_of, free_port, read_procfile, service_env
from tests.support.helpers import SPEECH_EN
from tests.support.stack import STACK_LAYOUT, WEBHOOK_SECRET

__all__ = ["alive", "children_of", "free_port"]

ENABLED = os.environ.get("CHAOS") == "1"
SKIP_REASON = ("chaos tests kill and restart servers and take minutes: run them with `make chaos` "
               "(which sets CHAOS=1)")
HERE = Path(__file__).resolve().parent
FINAL = ("completed", "failed", "cancelled")
RANK = {"queued": 0, "extracting": 1, "transcribing": 2, "completed": 3, "failed": 3, "cancelled": 3}

# Numbers worth reporting (boot times, outage answers, test durations), shown at the end of the run.
TIMINGS: dict[str, Any] = {}


# -- collection: nothing here runs without CHAOS=1 ----------------------------------------------

class _Placeholder(pytest.Item):
    def runtest(self) -> None:  # never runs: it is marked skip
        raise AssertionError("chaos tests are off")

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name


class _NotCollected(pytest.File):
    """Stands in for a test module of this folder when chaos tests are off: the module itself
    is never imported; one skipped placeholder says why (so a run of this folder alone passes
    with the reason instead of finding no tests)."""

    def collect(self) -> Iterable[pytest.Item]:
        item = _Placeholder.from_parent(self, name="chaos-tests")
        item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
        yield item


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not ENABLED and module_path.resolve().parent == HERE and module_path.name.startswith("test_"):
        return _NotCollected.from_parent(parent, path=module_path)
    return None


# Under pytest-xdist (`make chaos` spreads the tests over three processes, since they mostly wait)
# each worker has a stack and timings of its own; the controller prints them all, per worker.
WORKER_TIMINGS: dict[str, dict[str, Any]] = {}


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["chaos_timings"] = json.dumps(TIMINGS)


def pytest_testnodedown(node: Any, error: object) -> None:
    timings = getattr(node, "workeroutput", {}).get("chaos_timings")
    if timings:
        WORKER_TIMINGS[str(node.gateway.id)] = json.loads(timings)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    sources = dict(WORKER_TIMINGS)
    if TIMINGS:
        sources["this process"] = TIMINGS
    if not sources:
        return
    terminalreporter.section("chaos timings")
    for source, timings in sources.items():
        for name, value in timings.items():
            terminalreporter.write_line(f"{name}: {value}" if len(sources) == 1 else f"[{source}] {name}: {value}")


# -- small helpers --------------------------------------------------------------------------------

def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - a server that is coming back answers with errors first
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


_speech_pcm: np.ndarray | None = None
_unique = itertools.count(1)


def unique_speech(path: Path, repeats: int = 1) -> Path:
    """The project's English fixture said ``repeats`` times, ended with a silence of a length no
    other call of this session uses: new bytes, so never a cache hit of an earlier test."""
    global _speech_pcm
    if _speech_pcm is None:
        from pipeline.media import decode_audio

        _speech_pcm = (decode_audio(SPEECH_EN) * 32767).astype(np.int16)
    gap = np.zeros(8000, dtype=np.int16)
    tail = np.zeros(160 * next(_unique), dtype=np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        for _ in range(repeats):
            out.writeframes(_speech_pcm.tobytes() + gap.tobytes())
        out.writeframes(tail.tobytes())
    return path


def history_is_sane(history: list[dict[str, Any]]) -> bool:
    """Forward only, ends in exactly one final state."""
    states = [h["status"] for h in history]
    ranks = [RANK[s] for s in states]
    return (bool(states) and all(a < b for a, b in itertools.pairwise(ranks))
            and sum(s in FINAL for s in states) == 1 and states[-1] in FINAL)


# -- private servers ------------------------------------------------------------------------------

class PrivateRedis:
    """A ``redis-server`` of this session's own on a free loopback port, keeping nothing on disk."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def up(self) -> bool:
        try:
            client = redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"),
             "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        proc = self.proc
        wait_until(lambda: proc.poll() is not None or self.up(), 20, "private Redis starting")
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited ({proc.returncode}); see {self.dir / 'redis.log'}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _rabbit_tool(name: str) -> str | None:
    # The /usr/sbin wrappers switch to the rabbitmq user when run as root; that user could not
    # read this session's private folders, so the packaged scripts are run directly.
    packaged = Path("/usr/lib/rabbitmq/bin") / name
    return str(packaged) if packaged.is_file() else shutil.which(name)


class PrivateRabbit:
    """A RabbitMQ node of this session's own: own node name, AMQP and distribution ports,
    config (no plugins, loopback only), data, logs and Erlang cookie; the machine's node on
    5672 is never touched."""

    def __init__(self, workdir: Path) -> None:
        self.server, self.ctl_bin = _rabbit_tool("rabbitmq-server"), _rabbit_tool("rabbitmqctl")
        self.base = workdir / "rabbitmq"
        self.base.mkdir(parents=True, exist_ok=True)
        self.node = f"chaos-{os.getpid()}@localhost"
        self.port, self.dist_port = free_port(), free_port()
        (self.base / "enabled_plugins").write_text("[].\n")
        # Our own config: the machine's /etc/rabbitmq/rabbitmq.conf may name 5672.
        (self.base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        cookie = self.base / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self.env = {
            **os.environ,
            "HOME": str(self.base),  # the server and rabbitmqctl read $HOME/.erlang.cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.started = False
        self.boot_seconds: list[float] = []

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert self.ctl_bin is not None
        return subprocess.run([self.ctl_bin, "-q", "-n", self.node, *args], env=self.env, cwd=self.base,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def amqp_up(self) -> bool:
        params = pika.URLParameters(self.url)
        params.socket_timeout = 2
        params.connection_attempts = 1
        try:
            pika.BlockingConnection(params).close()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not (yet) up"
            return False

    def pid(self) -> int | None:
        try:
            return int((self.base / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> float:
        """Boot the node and wait until it accepts AMQP logins; return the seconds it took."""
        assert self.server is not None
        started = time.monotonic()
        self.started = True
        subprocess.run([self.server, "-detached"], env=self.env, cwd=self.base, check=True,
                       capture_output=True, timeout=60)
        deadline = started + 120
        while self.ctl("await_startup", "--timeout", "30", timeout=45).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private RabbitMQ did not start; logs in {self.base / 'log'}")
            time.sleep(0.5)
        wait_until(self.amqp_up, 30, "private RabbitMQ accepting logins")
        seconds = round(time.monotonic() - started, 2)
        self.boot_seconds.append(seconds)
        return seconds

    def stop(self) -> None:
        """Stop the whole node (the Erlang VM); killed if it does not stop."""
        if not self.started:
            return
        pid = self.pid()
        self.ctl("stop", timeout=60)
        if pid is not None:
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not alive(pid), 20, "RabbitMQ node exiting")
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.started = False

    def queue_depths(self) -> dict[str, int]:
        result = self.ctl("list_queues", "--no-table-headers", "name", "messages")
        depths = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                depths[parts[0]] = int(parts[1])
        return depths


# -- the chaos stack ------------------------------------------------------------------------------

class Chaos:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis_server = PrivateRedis(workdir)
        self.rabbit = PrivateRabbit(workdir)
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        data = workdir / "data"
        settings = {
            "REDIS_URL": self.redis_server.url,
            "RABBITMQ_URL": self.rabbit.url,
            "UPLOAD_DIR": str(data / "uploads"),
            "CACHE_DIR": str(data / "cache"),
            "MODEL_DIR": str(data / "models"),
            "DEVICE": "cpu",
            **STACK_LAYOUT,
            "MAX_RETRIES": "2",
            "SYNC_TIMEOUT_SECONDS": "120",
            "WEBHOOK_ALLOW_PRIVATE": "true",  # the receivers listen on loopback
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            # Enough attempts for a receiver answering 503 for 30 s; retries in seconds, swept each second.
            "WEBHOOK_MAX_ATTEMPTS": "10",
            "WEBHOOK_SCHEDULE_SECONDS": "0,1,4,8",
            "WEBHOOK_SWEEP_SECONDS": "1",
            # A stuck job is sent again after a minute (longer than a killed worker's lease, 30 s,
            # and its restart), looked for every 5 s.
            "RECONCILE_AFTER_SECONDS": "60",
            "RECONCILE_PERIOD_SECONDS": "5",
            "LOG_FORMAT": "json",
            # Room for every transcript of the session: the load test counts engine runs by it.
            "CACHE_SIZE": "1000",
            # The load test's 20 clients all come from 127.0.0.1 without a key, so to the
            # per-client limit they are one client with up to 500 jobs at once.
            "MAX_ACTIVE_JOBS_PER_CLIENT": "1000",
        }
        self.settings = Settings.from_env(settings)
        port = free_port()
        specs = read_procfile(port)
        specs["web"] = specs["web"].with_options(workers=1)
        specs["worker"] = specs["worker"].with_options(threads=2)
        # The developer's own settings (a DEFAULT_MODEL, an API_KEYS, ...) stay out: only ours.
        self.service = Service(specs, service_env(settings), self.logs)
        self.url = f"http://127.0.0.1:{port}"
        self.redis = redis.Redis(port=self.redis_server.port, decode_responses=True,
                                 socket_connect_timeout=2, socket_timeout=10)
        self.http = requests.Session()

    # lifecycle
    def start(self) -> None:
        self.redis_server.start()
        TIMINGS["rabbitmq boot (s)"] = self.rabbit.start()
        started = time.monotonic()
        self.service.ensure()
        self.wait_ready(90)
        TIMINGS["service start (s)"] = round(time.monotonic() - started, 2)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.http.close()
            self.redis.close()
        try:
            self.service.stop_all()
        finally:
            try:
                self.rabbit.stop()
            finally:
                self.redis_server.stop()

    def recover(self) -> None:
        """Bring back whatever an earlier test left down, and wait until the service is ready."""
        if not self.redis_server.up():
            self.redis_server.stop()
            self.redis_server.start()
        if not self.rabbit.amqp_up():
            if self.rabbit.ctl("start_app").returncode != 0:
                self.rabbit.stop()
                self.rabbit.start()
            wait_until(self.rabbit.amqp_up, 60, "private RabbitMQ back")
        self.service.ensure()
        self.wait_ready(90)

    def health(self) -> requests.Response:
        return self.http.get(self.url + "/api/health", timeout=15)

    def wait_ready(self, timeout: float) -> None:
        self.service.wait_ready(self.url, timeout, http=self.http)

    def log_tail(self, name: str, lines: int = 40) -> str:
        return self.service.log_tail(name, lines)

    # API
    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.post(self.url + path, timeout=kwargs.pop("timeout", 60), **kwargs)

    def submit(self, audio: Path | bytes, **form: str) -> requests.Response:
        data = audio.read_bytes() if isinstance(audio, Path) else audio
        return self.post("/api/transcribe/async", files={"file": ("audio.wav", data)}, data=form)

    def accepted(self, audio: Path | bytes, **form: str) -> str:
        response = self.submit(audio, **form)
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"])

    def status(self, task_id: str) -> dict[str, Any]:
        response = self.get(f"/api/transcribe/async/status/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_final(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        wait_until(lambda: self.job_field(task_id, "status") in FINAL, timeout,
                   f"job {task_id} final (logs in {self.logs})", interval=0.25)
        return self.status(task_id)

    # Redis, read directly
    def job_field(self, task_id: str, name: str) -> str | None:
        value: str | None = self.redis.hget(keys.job_key(task_id), name)  # type: ignore[assignment]
        return value

    def history(self, task_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.redis.lrange(keys.job_history_key(task_id), 0, -1)]  # type: ignore[union-attr]

    # worker logs
    def log_size(self, name: str) -> int:
        path = self.logs / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def log_records(self, name: str, since: int = 0, task_id: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of a process (every start of it appends to one file)."""
        with (self.logs / f"{name}.log").open("rb") as f:
            f.seek(since)
            raw = f.read().decode(errors="replace")
        records = []
        for line in raw.splitlines():
            start = line.find("{")
            if start < 0:
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line[start:])
                if isinstance(record, dict) and (task_id is None or record.get("task_id") == task_id):
                    records.append(record)
        return records


@pytest.fixture(scope="session")
def chaos_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    missing = [tool for tool in ("redis-server", "rabbitmq-server", "rabbitmqctl")
               if (_rabbit_tool(tool) if tool.startswith("rabbit") else shutil.which(tool)) is None]
    if missing:
        pytest.skip(f"chaos tests need {', '.join(missing)} installed on this machine")
    stack = Chaos(tmp_path_factory.mktemp("chaos"))
    atexit.register(stack.close)  # a second line of defence; close() is idempotent

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # A SIGTERM (a CI time-out, `kill`) becomes an interruption, so that pytest tears this
    # fixture down and nothing started here outlives the run.
    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
        atexit.unregister(stack.close)
        signal.signal(signal.SIGTERM, previous)
        (stack.workdir / "timings.json").write_text(json.dumps(TIMINGS, indent=2))
        TIMINGS["chaos folder (logs, timings.json)"] = str(stack.workdir)


@pytest.fixture
def chaos(chaos_session: Chaos, request: pytest.FixtureRequest) -> Iterator[Chaos]:
    """The chaos stack with every part up, whatever the test before left behind."""
    chaos_session.recover()
    started = time.monotonic()
    yield chaos_session
    TIMINGS[f"{request.node.name} (s)"] = round(time.monotonic() - started, 1)
