"""The real API (the Procfile's gunicorn, gevent worker and all), and where asked its workers, with
settings of a test's own: on a Redis database and a RabbitMQ virtual host of its own, so that
limits and keys never meet the session's shared stack.

Without workers, jobs stay ``queued``: exactly what the limits and roles tests want (an active
job that stays active, a stream that stays open) and cheap on a two-core machine.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests

from pipeline.tooling.stack import Service, free_port, read_procfile, redis_database, redis_url, service_env
from tests.support.helpers import SPEECH_EN
from tests.support.stack import STACK_LAYOUT, own_vhost


@dataclass
class PrivateApi:
    url: str
    env: dict[str, str]
    redis: redis.Redis
    service: Service
    upload_dir: Path

    def get(self, path: str, key: str | None = None, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, headers=auth(key), timeout=60, **kwargs)

    def post(self, path: str, key: str | None = None, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, headers=auth(key), timeout=180, **kwargs)

    def upload(self, key: str | None = None, path: Path = SPEECH_EN, to: str = "/api/transcribe/async",
               **form: str) -> requests.Response:
        with path.open("rb") as fh:
            return self.post(to, key, files={"file": (path.name, fh)}, data=form)

    def stored(self) -> set[str]:
        """Every file under UPLOAD_DIR and SCRATCH_DIR."""
        folders = (self.upload_dir, self.upload_dir.parent / "scratch")
        return {str(p) for folder in folders for p in folder.rglob("*") if p.is_file()}

    def log(self) -> str:
        return self.service.log_path("web").read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        from pipeline.tooling.stack import children_of

        return children_of(self.service.pid("web"))


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@contextlib.contextmanager
def private_api(tmp: Path, purpose: str, settings: dict[str, str], *,
                processes: tuple[str, ...] = ("web",)) -> Iterator[PrivateApi]:
    """Start ``processes`` of the Procfile (one gunicorn worker) with ``settings`` on top of a
    test configuration; stop them, and give back the database and the virtual host, after."""
    with redis_database(purpose) as db, own_vhost(f"whisper-pipeline-{purpose}") as amqp:
        env = {
            "REDIS_URL": redis_url(db),
            "RABBITMQ_URL": amqp,
            "UPLOAD_DIR": str(tmp / "uploads"),
            "SCRATCH_DIR": str(tmp / "scratch"),
            "CACHE_DIR": str(tmp / "cache"),
            "MODEL_DIR": str(tmp / "models"),
            "DEVICE": "cpu",
            **STACK_LAYOUT,
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "LOG_FORMAT": "text",
            **settings,
        }
        port = free_port()
        specs = read_procfile(port)
        specs["web"] = specs["web"].with_options(workers=1)
        service = Service({name: specs[name] for name in processes}, service_env(env), tmp / "logs")
        client = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
        url = f"http://127.0.0.1:{port}"
        try:
            service.start_all()
            service.wait_ready(url, timeout=120)
            yield PrivateApi(url=url, env=env, redis=client, service=service, upload_dir=tmp / "uploads")
        finally:
            service.stop_all()
            client.close()


class SseClient:
    """An event stream held open on a bare socket: hundreds of them cost the test a socket each,
    not a thread."""

    def __init__(self, url: str, path: str, key: str | None = None) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        headers = "".join(f"{k}: {v}\r\n" for k, v in auth(key).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{headers}\r\n".encode())
        self.received = b""

    def read_headers(self) -> int:
        """The status code, once the answer's head has arrived."""
        while b"\r\n\r\n" not in self.received:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.received += chunk
        return int(self.received.split(b" ", 2)[1])

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.received:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{marker!r} not received within {timeout} s: {self.received[-500:]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed before {marker!r}: {self.received[-500:]!r}")
            self.received += chunk
        return self.received

    def read_to_close(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"still open after {timeout} s: {self.received[-500:]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            # gunicorn ends a chunked answer with a zero-length chunk, then may keep the connection.
            self.received += chunk
            if not chunk or self.received.endswith(b"\r\n0\r\n\r\n"):
                return self.received

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
