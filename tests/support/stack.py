"""What the integration tests hold of the running service: the stack they talk to, the
webhook secret it signs with, and RabbitMQ virtual hosts of a test's own."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
import requests

from pipeline.settings import Settings
from pipeline.tooling.stack import Service, rabbitmq_vhost

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"whisper-pipeline-test-secret-32b").decode()

# Every stack a test starts: one transcriber process of one engine thread. Several test
# processes (`TEST_WORKERS`, `make chaos`'s) and their stacks share the machine's cores, where
# more engine threads than cores wait on each other (README, Development, has the times).
STACK_LAYOUT = {"TRANSCRIBER_PROCESSES": "1", "CPU_THREADS": "1"}


@contextlib.contextmanager
def own_vhost(name: str) -> Iterator[str]:
    """A RabbitMQ virtual host made for the caller and removed afterwards (TEST_RABBITMQ_URL,
    or the default one where rabbitmqctl is missing, instead)."""
    if "TEST_RABBITMQ_URL" in os.environ or shutil.which("rabbitmqctl") is None:
        yield os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
        return
    with rabbitmq_vhost(name.removeprefix("whisper-pipeline-")) as url:
        yield url


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
