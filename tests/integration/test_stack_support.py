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

from pipeline.tooling import stack
from pipeline.tooling.stack import CLAIM_PREFIX, ProcessSpec, Service


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
