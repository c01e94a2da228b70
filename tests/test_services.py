"""`make run` and `make test` first make sure Redis and RabbitMQ answer (pipeline/services.py)."""

from __future__ import annotations

import socket

import pytest

from pipeline import services
from pipeline.settings import Settings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again once the socket is


def test_both_answer_here(settings: Settings) -> None:
    assert services.ensure(settings) == []


def test_a_server_that_is_down_and_not_installed_gets_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on these ports, and "not installed" is what which() says on such a machine.
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    monkeypatch.setenv("REDIS_URL", f"redis://localhost:{closed_port()}/0")
    monkeypatch.setenv("RABBITMQ_URL", f"amqp://guest:guest@localhost:{closed_port()}/")
    assert services.main() == 1
    err = capsys.readouterr().err
    assert "Redis does not answer" in err and "RabbitMQ does not answer" in err
    assert "docker compose up -d redis rabbitmq" in err
