"""Fixtures: a real Redis and RabbitMQ, isolated from a developer's running service, and the
real API and worker processes for the integration tests (started by tests/support/stack.py, as
the chaos tests and the benchmark start theirs)."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from pipeline.settings import Settings
from pipeline.worker.context import Context, build_context
from tests.helpers import ROOT, shared_audio
from tests.support.stack import (
    Service,
    drop_settings_from,
    free_port,
    rabbitmq_vhost,
    read_procfile,
    redis_database,
    redis_url,
    service_env,
)

__all__ = ["ROOT", "Stack", "own_vhost"]

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"whisper-pipeline-test-secret-32b").decode()
_free_port = free_port  # the name some test modules import


def pytest_configure(config: pytest.Config) -> None:
    # The developer's own settings (an API_KEYS, a STORAGE_URL, a DEFAULT_MODEL in the shell)
    # must not change what the tests see: in-process code and every process a test starts
    # read only the settings the tests give them.
    drop_settings_from(os.environ)


@pytest.fixture(scope="session")
def redis_dbs() -> Iterator[tuple[str, str]]:
    """(stack URL, unit URL): two databases of this session's own, released at its end.
    TEST_REDIS_URL and TEST_UNIT_REDIS_URL override them."""
    with contextlib.ExitStack() as claims:
        urls = [os.environ[variable] if variable in os.environ
                else redis_url(claims.enter_context(redis_database(purpose)))
                for variable, purpose in (("TEST_REDIS_URL", "tests"), ("TEST_UNIT_REDIS_URL", "unit-tests"))]
        yield urls[0], urls[1]


@contextlib.contextmanager
def own_vhost(name: str) -> Iterator[str]:
    """A RabbitMQ virtual host made for the caller and removed afterwards (TEST_RABBITMQ_URL,
    or the default one where rabbitmqctl is missing, instead)."""
    if "TEST_RABBITMQ_URL" in os.environ or shutil.which("rabbitmqctl") is None:
        yield os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
        return
    with rabbitmq_vhost(name.removeprefix("whisper-pipeline-")) as url:
        yield url


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A virtual host of this test session's own, so that neither a `make run` nor another
    test session on the machine shares its queues (TEST_RABBITMQ_URL overrides)."""
    with own_vhost("tests") as url:
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
        "SCRATCH_DIR": str(data_dir / "scratch"),
        "DEVICE": "cpu",
        "CPU_THREADS": "2",
        "MAX_RETRIES": "1",
        "SYNC_TIMEOUT_SECONDS": "120",
        # The receivers in the tests listen on loopback, which production refuses.
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_MAX_ATTEMPTS": "4",
        # Retries in seconds rather than Standard Webhooks' minutes and hours, swept every second.
        "WEBHOOK_SCHEDULE_SECONDS": "0,1,4,8",
        "WEBHOOK_SWEEP_SECONDS": "1",
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
    return shared_audio("jfk.flac")


@dataclass
class Stack:
    url: str
    settings: Settings
    redis: redis.Redis
    logs: Path
    service: Service | None = None  # the processes, for a test that kills or adds one

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
    """The real service: the Procfile's gunicorn and Dramatiq workers, on every queue, scaled
    down to the test machine's two cores."""
    settings = stack_settings
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    client.flushdb()
    port = free_port()
    specs = read_procfile(port)
    specs["web"] = specs["web"].with_options(workers=1)
    specs["worker"] = specs["worker"].with_options(threads=2)
    service = Service(specs, service_env(test_env), data_dir / "logs")
    url = f"http://127.0.0.1:{port}"
    try:
        service.start_all()
        service.wait_ready(url, timeout=120)
        yield Stack(url=url, settings=settings, redis=client, logs=service.logs, service=service)
    finally:
        service.stop_all()  # also when it did not start: no worker outlives the session
        client.close()


@pytest.fixture
def live(stack: Stack) -> Stack:
    """The running stack with an empty transcript cache, so that each test really transcribes."""
    keys: list[str] = stack.redis.keys("wp:cache:*")  # type: ignore[assignment]
    if keys:
        stack.redis.delete(*keys)
    return stack
