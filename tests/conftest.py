"""Fixtures: a real Redis and RabbitMQ, isolated from a developer's running service, and the
real API and worker processes for the integration tests (started by pipeline/tooling/stack.py, as
the chaos tests and the benchmark start theirs)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.settings import Settings
from pipeline.storage import LocalStorage
from pipeline.tooling.s3 import S3Server, seaweedfs
from pipeline.tooling.stack import (
    Service,
    drop_settings_from,
    free_port,
    read_procfile,
    redis_database,
    redis_url,
    service_env,
)
from pipeline.worker.context import Context, build_context
from tests.support.browser import CHROMIUM_ARGS
from tests.support.helpers import long_speech, shared_audio
from tests.support.stack import STACK_LAYOUT, WEBHOOK_SECRET, Stack, own_vhost

TESTS = Path(__file__).resolve().parent


TIERS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration, "chaos": pytest.mark.chaos}


# The integration files that took longest (2026-12-06, three test processes on 2 cores), longest
# first. The Makefile turns off xdist's own order (files with more tests first), which sent the
# few long files last, where one process ran on alone after the others had finished; started
# first, they overlap with everything else.
SLOWEST_FIRST = (
    "test_engines.py", "test_serving.py", "test_diarize_stage.py", "test_realtime.py", "test_service.py",
    "test_rabbitmq.py", "test_lifecycle.py", "test_memory.py", "test_cli.py", "test_recycle.py",
    "test_weights.py", "test_roles.py", "test_no_shared_disk.py", "test_diarize_meetings.py",
    "test_storage.py", "test_bench_decoders.py", "test_limits.py", "test_page.py", "test_known_speakers.py",
    "test_batched.py", "test_hostile.py", "test_page_live.py", "test_openapi.py", "test_supervise.py",
    "test_diarization.py", "test_bench_consistency.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The tier is the folder a test lives in: tests/unit, tests/integration or tests/chaos.
    rank = {name: n for n, name in enumerate(SLOWEST_FIRST)}
    order: dict[str, int] = {}
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(TIERS[tier])
        order[item.nodeid] = rank.get(item.path.name, len(rank)) if tier == "integration" else len(rank)
    # A stable sort: within a file, and among the files not named, the order stays pytest's.
    items.sort(key=lambda item: order[item.nodeid])


def pytest_configure(config: pytest.Config) -> None:
    # The developer's own settings (an API_KEYS, a STORAGE_URL, a DEFAULT_MODEL in the shell)
    # must not change what the tests see: in-process code and every process a test starts
    # read only the settings the tests give them.
    drop_settings_from(os.environ)
    # libgomp (under torch and CTranslate2) spins its idle threads by default. The suite runs
    # two test processes and their stacks on two cores, where spinning threads take the cores
    # from the ones with work: openai-whisper's decodes ran 3-4x slower side by side. Set
    # before any of them loads; the processes the tests start inherit it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def redis_dbs() -> Iterator[tuple[str, str]]:
    """(stack URL, unit URL): two databases of this session's own, released at its end.
    TEST_REDIS_URL and TEST_UNIT_REDIS_URL override them."""
    with contextlib.ExitStack() as claims:
        urls = [os.environ[variable] if variable in os.environ
                else redis_url(claims.enter_context(redis_database(purpose)))
                for variable, purpose in (("TEST_REDIS_URL", "tests"), ("TEST_UNIT_REDIS_URL", "unit-tests"))]
        yield urls[0], urls[1]


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
        **STACK_LAYOUT,
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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the session; tests keep apart by using buckets of their own."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium, or why there is none: the tests then fail, naming what to install."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        yield "Playwright is not installed: .venv/bin/pip install playwright (the Python package only)"
        return
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        yield (f"Chromium is not installed ({path} is missing): apt-get install -y chromium, "
               "or set CHROMIUM to a Chromium binary")
        return
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 160 s of the speech fixture with pauses, for the tests of long recordings."""
    return long_speech(tmp_path_factory.mktemp("long") / "long.wav", 25)


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    """A folder store of the test's own."""
    storage = LocalStorage(tmp_path / "store")
    storage.check()
    return storage
