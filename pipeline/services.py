"""Make sure Redis and RabbitMQ answer before the service or the tests start.

``python -m pipeline.services`` checks REDIS_URL and RABBITMQ_URL; a server that is down on
this machine and installed here is started; otherwise it stops with one clear message.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from pipeline.settings import Settings

log = logging.getLogger("pipeline.services")

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}
COMPOSE_HINT = "docker compose up -d redis rabbitmq"


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host or "localhost", port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if answers(host, port):
            return True
        time.sleep(0.5)
    return False


def _start_redis(port: int) -> None:
    Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
    Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", str(port),
         "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
         "--logfile", "/var/log/redis/ci.log"],
        check=True,
    )


def _start_rabbitmq(port: int) -> None:
    subprocess.run(["rabbitmq-server", "-detached"], check=True)


def _amqp_ready(url: str) -> bool:
    # The port opens a little before RabbitMQ accepts logins.
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
        return True
    except Exception:  # noqa: BLE001
        return False


def ensure(settings: Settings) -> list[str]:
    """Return the problems left after trying to start what is down (empty: all answer)."""
    problems = []
    checks = [
        ("Redis", "REDIS_URL", settings.redis_url, 6379, "redis-server", _start_redis),
        ("RabbitMQ", "RABBITMQ_URL", settings.rabbitmq_url, 5672, "rabbitmq-server", _start_rabbitmq),
    ]
    for name, var, url, default_port, server, start in checks:
        parsed = urlparse(url)
        host, port = parsed.hostname or "localhost", parsed.port or default_port
        if answers(host, port):
            continue
        if host not in LOCAL_HOSTS:
            problems.append(f"{name} at {host}:{port} ({var}) does not answer.")
            continue
        if shutil.which(server) is None:
            problems.append(f"{name} does not answer on {host}:{port} and is not installed here.")
            continue
        log.info("starting %s on port %d", name, port)
        start(port)
        if not _wait(host, port, 90):
            problems.append(f"{name} was started but does not answer on {host}:{port}.")
    rabbit = urlparse(settings.rabbitmq_url)
    if not any("RabbitMQ" in p for p in problems):
        deadline = time.monotonic() + 60
        while not _amqp_ready(settings.rabbitmq_url):
            if time.monotonic() > deadline:
                problems.append(f"RabbitMQ on {rabbit.hostname}:{rabbit.port or 5672} refuses logins.")
                break
            time.sleep(1)
    return problems


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = Settings.from_env()
    problems = ensure(settings)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"Start them with `{COMPOSE_HINT}` (or point REDIS_URL and RABBITMQ_URL at "
              "running servers), then try again.", file=sys.stderr)
        return 1
    log.info("Redis and RabbitMQ answer.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
