"""api/health.py: the RabbitMQ check and its answer shared for a moment between requests (the routes
themselves, which read Redis, are in tests/integration/test_health.py)."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from api import health
from api.state import ApiState
from pipeline.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_broker_nobody_listens_for_is_down_and_says_so_at_once() -> None:
    started = time.monotonic()
    assert health._rabbitmq_ok(f"amqp://guest:guest@127.0.0.1:{closed_port()}/") is False
    assert time.monotonic() - started < 5  # one attempt, no retries


def test_one_check_answers_every_request_for_two_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, answers, asked = Clock(), [True, False], []

    def check(url: str) -> bool:
        asked.append(url)
        return answers[len(asked) - 1]

    monkeypatch.setattr(health, "_rabbitmq_ok", check)
    monkeypatch.setattr(health, "time", SimpleNamespace(monotonic=clock))
    none = cast(Any, None)
    st = ApiState(settings=Settings(rabbitmq_url="amqp://broker/"), redis=none, jobs=none, cache=none,
                  broker=none, hub=none, limits=none, storage=none)
    assert health._rabbitmq_ok_recently(st) is True
    clock.now += health.RABBITMQ_CHECK_SECONDS
    assert health._rabbitmq_ok_recently(st) is True  # the same answer, not asked again
    assert asked == ["amqp://broker/"]
    clock.now += 0.01
    assert health._rabbitmq_ok_recently(st) is False
    assert asked == ["amqp://broker/"] * 2
