"""pipeline/tooling/stack.py, which starts the service for the tests, the chaos tests and the
benchmark: the Procfile read as it is, the caller's settings only, one registry of Redis
databases, and no process left behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from pipeline.queues import QUEUES
from pipeline.tooling import stack
from pipeline.tooling.stack import CLAIM_PREFIX, ProcessSpec, Service


def test_the_environment_holds_the_callers_settings_and_no_stray_one() -> None:
    # Every setting set in the shell, one of them in lower case, and a Dramatiq knob.
    shell = {name: "stray" for name in stack.setting_names()}
    shell.pop("DEFAULT_MODEL")
    shell.update({"HOME": "/home/me", "PATH": "/usr/bin", "API_KEYS": "secret", "default_model": "base",
                  "dramatiq_queue_prefetch": "50", "LANG": "C.UTF-8"})
    env = stack.service_env({"REDIS_URL": "redis://localhost:6379/3"}, base=shell)
    assert env["REDIS_URL"] == "redis://localhost:6379/3"
    assert env["HOME"] == "/home/me" and env["LANG"] == "C.UTF-8"
    assert "stray" not in env.values()
    for stray in ("API_KEYS", "default_model", "dramatiq_queue_prefetch"):
        assert stray not in env
    assert env["PATH"].split(os.pathsep)[:2] == [str(stack.BIN), "/usr/bin"]


def test_the_test_process_itself_runs_without_the_shells_settings() -> None:
    # tests/conftest.py drops them when the session starts.
    assert not stack.setting_names() & set(os.environ)


def test_the_procfile_is_read_as_it_is_bound_to_loopback() -> None:
    specs = stack.read_procfile(8123)
    assert {"web", "worker", "transcriber"} <= set(specs)
    for spec in specs.values():
        assert Path(spec.argv[0]).parent == stack.BIN, spec.argv[0]
        assert "WORKER_METRICS_PORT" not in spec.env
    assert "127.0.0.1:8123" in specs["web"].argv and not any("0.0.0.0" in a for a in specs["web"].argv)
    assert specs["transcriber"].env == {"dramatiq_queue_prefetch": "1"}
    assert specs["transcriber"].queues == {"transcribe"}
    assert frozenset().union(*(s.queues for s in specs.values())) == set(QUEUES)


def test_options_are_replaced_or_added() -> None:
    spec = ProcessSpec("w", ("dramatiq", "pipeline.worker.broker", "--processes", "1", "--queues", "a", "b"))
    changed = spec.with_options(processes=3, threads=2)
    assert changed.argv == ("dramatiq", "--threads", "2", "pipeline.worker.broker", "--processes", "3",
                            "--queues", "a", "b")
    assert changed.queues == {"a", "b"} and spec.argv[3] == "1"


def test_redis_databases_are_claimed_once_and_dead_claims_taken_back() -> None:
    registry = redis.Redis(host=stack.REDIS_HOST, port=stack.REDIS_PORT, db=0, decode_responses=True)
    first = stack.claim_redis_db("test-a")
    second = stack.claim_redis_db("test-b")
    try:
        assert first != second
        assert registry.get(f"{CLAIM_PREFIX}:{first}") == f"{socket.gethostname()}:{os.getpid()}:test-a"
    finally:
        stack.release_redis_db(second)
    assert registry.get(f"{CLAIM_PREFIX}:{second}") is None
    # A claim of a process that is gone is taken back when asked for by name.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    registry.set(f"{CLAIM_PREFIX}:{second}", f"{socket.gethostname()}:{dead}:crashed", ex=60)
    try:
        assert stack.claim_redis_db("test-c", prefer=second) == second
        stack.release_redis_db(second)
        # A live holder keeps its database.
        assert stack.claim_redis_db("test-d", prefer=first) != first
    finally:
        for key in registry.scan_iter(match=f"{CLAIM_PREFIX}:*"):
            if str(registry.get(key)).startswith(f"{socket.gethostname()}:{os.getpid()}:test-d"):
                stack.release_redis_db(int(key.rsplit(":", 1)[1]))
        stack.release_redis_db(first)
        registry.close()


def test_stopping_a_process_leaves_none_of_its_children(tmp_path: Path) -> None:
    # A main process that ignores SIGTERM, with a child: the stop must still end both.
    script = "trap '' TERM; sleep 300 & sleep 300"
    service = Service({"stubborn": ProcessSpec("stubborn", ("sh", "-c", script))}, dict(os.environ), tmp_path)
    main = service.start("stubborn")
    deadline = time.monotonic() + 10
    while len(stack.session_members(main.pid)) < 2:
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    members = stack.session_members(main.pid)
    service.stop_all(grace=1)
    assert main.poll() is not None
    assert not [pid for pid in members if stack.alive(pid)]


def test_a_virtual_host_is_made_and_removed() -> None:
    purpose = "probe"
    if not shutil.which("rabbitmqctl"):
        pytest.skip("rabbitmqctl is not installed")
    import pika

    with stack.rabbitmq_vhost(purpose) as url:
        vhost = url.rsplit("/", 1)[1]
        assert vhost == f"whisper-pipeline-{purpose}-{os.getpid()}"
        pika.BlockingConnection(pika.URLParameters(url)).close()
    assert vhost not in stack.rabbitmqctl("list_vhosts", "name").stdout.split()
