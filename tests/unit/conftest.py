"""The unit tier reaches no server: a connection to Redis's or RabbitMQ's port fails the test
that tries it, so a test that needs one is found and moved to tests/integration."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

SERVER_PORTS = {6379: "Redis", 5672: "RabbitMQ", 15672: "RabbitMQ's management API"}


@pytest.fixture(autouse=True)
def no_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and len(address) >= 2 and address[1] in SERVER_PORTS:
            raise AssertionError(f"a unit test reached {SERVER_PORTS[address[1]]} at {address[0]}:{address[1]}; "
                                 "it belongs in tests/integration")
        connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
