"""`make run` and `make test` first make sure Redis and RabbitMQ answer (pipeline/tooling/services.py):
on a Debian machine without them, they are installed from Debian's packages and started."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pytest

from pipeline.settings import Settings
from pipeline.tooling import services


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again once the socket is


@dataclass
class FakeMachine:
    """A machine with nothing running and the programs in ``installed``; ``apt`` says whether
    apt-get is there and ``packages_work`` whether installing succeeds. It records what
    ``ensure`` did instead of doing it."""

    installed: set[str] = field(default_factory=set)
    apt: bool = True
    sudo: bool = False
    root: bool = True
    packages_work: bool = True
    running: set[int] = field(default_factory=set)
    ran: list[list[str]] = field(default_factory=list)
    started: list[str] = field(default_factory=list)

    def which(self, name: str) -> str | None:
        known = self.installed | ({"apt-get"} if self.apt else set()) | ({"sudo"} if self.sudo else set())
        return f"/usr/bin/{name}" if name in known else None

    def install(self, commands: list[list[str]]) -> bool:
        self.ran.extend(commands)
        if self.packages_work:
            self.installed |= {c[-1] for c in commands if "install" in c}
        return self.packages_work

    def start(self, server: services.Server, port: int) -> None:
        self.started.append(server.name)
        self.running.add(port)

    def machine(self) -> services.Machine:
        return services.Machine(
            answers=lambda host, port: port in self.running, which=self.which, root=self.root,
            install=self.install, start=self.start, wait=lambda host, port, seconds: port in self.running,
            amqp_ready=lambda url: True)


@pytest.fixture
def down() -> Settings:
    """Settings pointing at local ports where nothing listens."""
    return Settings.from_env({"REDIS_URL": f"redis://localhost:{closed_port()}/0",
                              "RABBITMQ_URL": f"amqp://guest:guest@localhost:{closed_port()}/"})


def test_servers_that_are_not_installed_are_installed_from_debian_and_started(down: Settings) -> None:
    fake = FakeMachine()
    assert services.ensure(down, fake.machine()) == []
    installs = [c for c in fake.ran if "install" in c]
    assert installs == [
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "rabbitmq-server"],
    ]
    assert ["apt-get", "update", "-qq"] in fake.ran
    assert fake.started == ["Redis", "RabbitMQ"]


def test_installed_servers_are_started_without_apt(down: Settings) -> None:
    fake = FakeMachine(installed={"redis-server", "rabbitmq-server"})
    assert services.ensure(down, fake.machine()) == []
    assert fake.ran == [] and fake.started == ["Redis", "RabbitMQ"]


def test_running_servers_are_left_alone(down: Settings) -> None:
    fake = FakeMachine(running={urlparse(down.redis_url).port or 0, urlparse(down.rabbitmq_url).port or 0})
    assert services.ensure(down, fake.machine()) == []
    assert fake.ran == [] and fake.started == []


def test_without_root_apt_runs_through_sudo_and_without_either_it_is_a_clear_message(down: Settings) -> None:
    with_sudo = FakeMachine(root=False, sudo=True)
    assert services.ensure(down, with_sudo.machine()) == []
    assert all(c[:2] == ["sudo", "-n"] for c in with_sudo.ran)
    neither = FakeMachine(root=False, sudo=False)
    problems = services.ensure(down, neither.machine())
    assert len(problems) == 2 and neither.ran == [] and neither.started == []
    assert "Debian's redis-server package" in problems[0] and "Debian's rabbitmq-server package" in problems[1]


def test_a_machine_without_apt_gets_one_clear_message_per_server(
    down: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeMachine(apt=False)
    machine = fake.machine()
    monkeypatch.setattr(services, "Machine", lambda: machine)
    monkeypatch.setenv("REDIS_URL", down.redis_url)
    monkeypatch.setenv("RABBITMQ_URL", down.rabbitmq_url)
    with caplog.at_level(logging.INFO, logger="pipeline.tooling.services"):
        assert services.main() == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2
    assert "Redis does not answer" in errors[0] and "REDIS_URL" in errors[0]
    assert "RabbitMQ does not answer" in errors[1] and "RABBITMQ_URL" in errors[1]
    assert fake.started == []


def test_a_failed_install_is_named(down: Settings) -> None:
    fake = FakeMachine(packages_work=False)
    problems = services.ensure(down, fake.machine())
    assert problems[0] == "Redis is not installed here and `apt-get install redis-server` failed."
    assert fake.started == []


def test_a_remote_server_is_never_installed_or_started() -> None:
    remote = Settings.from_env({"REDIS_URL": "redis://redis.invalid:6379/0",
                                "RABBITMQ_URL": "amqp://guest:guest@localhost:5672/"})
    fake = FakeMachine(running={5672})
    problems = services.ensure(remote, fake.machine())
    assert problems == ["Redis at redis.invalid:6379 (REDIS_URL) does not answer."]
    assert fake.ran == [] and fake.started == []
