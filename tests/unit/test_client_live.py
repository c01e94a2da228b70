"""The CLI's live command without a service: its pieces, its URL, and a service that closes
the socket first."""

from __future__ import annotations

import io
import json
import queue
from typing import Any

import pytest

from client import live


def test_pieces_are_equal_and_whole_samples() -> None:
    out = list(live.pieces(iter([b"a" * 5, b"b" * 6, b"c" * 3]), 4))
    assert out == [b"aaaa", b"abbb", b"bbbc", b"cc"]
    assert list(live.pieces(iter([b"xyz"]), 4)) == [b"xy"]  # an odd byte is half a sample


def test_the_realtime_url_asks_for_transcription() -> None:
    assert live.realtime_url("https://asr.example/base/", model="tiny.en", record=True) == \
        "wss://asr.example/base/v1/realtime?intent=transcription&model=tiny.en&record=true"
    assert live.realtime_url("http://h:1", model=None, record=False) == "ws://h:1/v1/realtime?intent=transcription"


class ClosedUnderfoot:
    """A socket whose reader thread closed it as the service said goodbye: sending or closing
    now fails as the operating system says, not as the library's ConnectionClosed."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[str] = queue.Queue()
        for event in ({"type": "input_audio_buffer.speech_started", "item_id": "i1", "audio_start_ms": 1200},
                      {"type": "conversation.item.input_audio_transcription.completed", "item_id": "i1",
                       "transcript": "Ask not."},
                      {"type": "session.closed", "recording": None}):
            self.inbox.put(json.dumps(event))
        self.sent: list[dict[str, Any]] = []

    def send(self, data: str) -> None:
        self.sent.append(json.loads(data))
        if len(self.sent) > 2:
            raise OSError(9, "Bad file descriptor")

    def receive(self, timeout: float | None = None) -> str | None:
        return self.inbox.get(timeout=timeout)

    def close(self) -> None:
        raise OSError(9, "Bad file descriptor")


def test_a_socket_the_service_closed_first_ends_the_run_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    socket = ClosedUnderfoot()
    monkeypatch.setattr(live.WebSocket, "connect", staticmethod(lambda *a, **k: socket))
    out, err = io.StringIO(), io.StringIO()
    closed = live.run_live("http://h:1", None, iter([b"\0" * 64_000]), rate=16_000, pace=0, model=None,
                           language="en", prompt=None, manual=False, record=False, partial=False, out=out, err=err)
    assert closed == {"type": "session.closed", "recording": None}
    assert out.getvalue() == "[00:01.2] Ask not.\n"
    assert socket.sent[0]["type"] == "session.update"
