"""Server-Sent Events, as the service streams a job's progress."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: its name (``status``, ``segment``, ``end``, ...) and JSON data."""

    name: str
    data: dict[str, Any]


def parse_sse(chunks: Iterator[bytes]) -> Iterator[tuple[str, str]]:
    """Split a Server-Sent Events byte stream into (event name, data) pairs; comments (such as
    keep-alives) are skipped."""
    buffer = b""
    name = ""
    data: list[str] = []
    for chunk in chunks:
        buffer += chunk
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                break
            line = buffer[:newline].rstrip(b"\r").decode("utf-8", "replace")
            buffer = buffer[newline + 1:]
            if not line:
                if data:
                    yield name or "message", "\n".join(data)
                name, data = "", []
            elif line.startswith(":"):
                continue
            else:
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    name = value
                elif key == "data":
                    data.append(value)
