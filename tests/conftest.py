"""Fixtures: a real Redis and RabbitMQ, isolated from a developer's running service, and the
real API and worker processes for the integration tests."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
import pytest
import redis
import requests

from pipeline.context import Context, build_context
from pipeline.settings import Settings
from tests.helpers import ROOT, SHARED_AUDIO

# Tests use their own Redis database and RabbitMQ virtual host, so that a `make run` on the
# same machine neither sees nor steals their jobs.
CLAIM_KEY = "whisper-pipeline-test-session"


def _claim_redis_db(registry: redis.Redis) -> int:
    """A Redis database no other test session on this machine is using (they flush theirs).
    Claims are kept in database 0, which the tests never flush."""
    for db in range(15, 0, -1):
        if registry.set(f"{CLAIM_KEY}:{db}", os.getpid(), nx=True, ex=6 * 3600):
            return db
    raise RuntimeError("every Redis database 1-15 is claimed by a test session")


@pytest.fixture(scope="session")
def redis_dbs() -> Iterator[tuple[str, str]]:
    """(stack URL, unit URL): two databases of this session's own, released at its end.
    TEST_REDIS_URL and TEST_UNIT_REDIS_URL override them."""
    registry = redis.Redis(db=0)
    claimed = []
    urls = []
    for variable in ("TEST_REDIS_URL", "TEST_UNIT_REDIS_URL"):
        if variable in os.environ:
            urls.append(os.environ[variable])
        else:
            db = _claim_redis_db(registry)
            claimed.append(db)
            urls.append(f"redis://localhost:6379/{db}")
    yield urls[0], urls[1]
    for db in claimed:
        client = redis.Redis(db=db)
        client.flushdb()
        client.close()
        registry.delete(f"{CLAIM_KEY}:{db}")
    registry.close()
BIN = Path(sys.executable).parent
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"whisper-pipeline-test-secret-32b").decode()


@contextlib.contextmanager
def own_vhost(name: str) -> Iterator[str]:
    """A RabbitMQ virtual host made for the caller and removed afterwards."""
    if "TEST_RABBITMQ_URL" in os.environ or shutil.which("rabbitmqctl") is None:
        yield os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
        return
    vhost = f"{name}-{os.getpid()}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   check=True, capture_output=True)
    try:
        url = f"amqp://guest:guest@localhost:5672/{vhost}"
        pika.BlockingConnection(pika.URLParameters(url)).close()
        yield url
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A virtual host of this test session's own, so that neither a `make run` nor another
    test session on the machine shares its queues (TEST_RABBITMQ_URL overrides)."""
    with own_vhost("whisper-pipeline-test") as url:
        yield url


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def test_env(rabbitmq_url: str, data_dir: Path, redis_dbs: tuple[str, str]) -> dict[str, str]:
    return {
        "REDIS_URL": redis_dbs[0],
        "RABBITMQ_URL": rabbitmq_url,
        "UPLOAD_DIR": str(data_dir / "uploads"),
        "CACHE_DIR": str(data_dir / "cache"),
        "MODEL_DIR": str(data_dir / "models"),
        "DEVICE": "cpu",
        "CPU_THREADS": "2",
        "MAX_RETRIES": "1",
        "SYNC_TIMEOUT_SECONDS": "120",
        # The receivers in the tests listen on loopback, which production refuses.
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_MAX_ATTEMPTS": "4",
        # Recordings over two minutes go through the chunked path.
        "LONG_AUDIO_SECONDS": "120",
        "CHUNK_SECONDS": "60",
    }


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str], redis_dbs: tuple[str, str]) -> Settings:
    """Settings for in-process tests: like the stack's, on their own Redis database."""
    return Settings.from_env({**test_env, "REDIS_URL": redis_dbs[1]})


@pytest.fixture(scope="session")
def stack_settings(test_env: dict[str, str]) -> Settings:
    return Settings.from_env(test_env)


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def session_context(settings: Settings) -> Context:
    """One context (and so one model cache) for every test that runs stages in-process."""
    return build_context(settings)


@pytest.fixture
def ctx(session_context: Context, redis_client: redis.Redis) -> Context:
    return session_context


@pytest.fixture
def jfk() -> Path:
    path = SHARED_AUDIO / "jfk.flac"
    if not path.is_file():
        pytest.skip(f"{path} is absent: ../shared/audio is only present beside the project's checkout")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    url: str
    settings: Settings
    redis: redis.Redis
    logs: Path
    worker_pids: set[int]

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return requests.post(self.url + path, timeout=180, **kwargs)  # type: ignore[arg-type]

    def session_delete(self, path: str) -> requests.Response:
        return requests.delete(self.url + path, timeout=30)

    def wait_final(self, task_id: str, timeout: float = 120.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, object] = self.get(f"/api/transcribe/async/status/{task_id}").json()
            if body["status"] in ("completed", "failed", "cancelled"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"job {task_id} not final after {timeout} s; logs in {self.logs}")


@pytest.fixture(scope="session")
def stack(test_env: dict[str, str], stack_settings: Settings, data_dir: Path) -> Iterator[Stack]:
    """The real service: gunicorn serving the API, and Dramatiq workers on every queue."""
    settings = stack_settings
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    client.flushdb()
    port = _free_port()
    env = {**os.environ, **test_env, "PYTHONUNBUFFERED": "1"}
    logs = data_dir / "logs"
    logs.mkdir()
    commands = {
        "web": [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
                "--threads", "8", "--worker-class", "gthread", "api:create_app()"],
        "worker": [str(BIN / "dramatiq"), "pipeline.broker", "pipeline.actors", "--processes", "1",
                   "--threads", "2", "--queues", "extract", "notify"],
        # As in the Procfile: a transcriber holds no second message while it works on one.
        "transcriber": ["env", "dramatiq_queue_prefetch=1", str(BIN / "dramatiq"), "pipeline.broker",
                        "pipeline.actors", "--processes", "1", "--threads", "1", "--queues", "transcribe"],
    }
    procs = {}
    for name, command in commands.items():
        log = (logs / f"{name}.log").open("wb")
        procs[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/api/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs.values()):
            stop()  # no worker outlives a stack that did not start
            for name in procs:
                sys.stderr.write((logs / f"{name}.log").read_text())
            raise RuntimeError("the service did not start")
        time.sleep(0.2)
    try:
        yield Stack(url=url, settings=settings, redis=client, logs=logs,
                    worker_pids={p.pid for name, p in procs.items() if name != "web"})
    finally:
        stop()
        client.close()


@pytest.fixture
def live(stack: Stack) -> Stack:
    """The running stack with an empty transcript cache, so that each test really transcribes."""
    keys = stack.redis.keys("wp:cache:*")
    if keys:
        stack.redis.delete(*keys)
    return stack
