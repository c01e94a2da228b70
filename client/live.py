"""``whisper-pipeline live FILE|-``: stream audio to ``/v1/realtime`` at real-time pace and print
each turn as it completes.

FILE is any audio or video the client's PyAV reads; ``-`` reads raw 16-bit little-endian mono
PCM from stdin (``--rate`` says its sample rate: 16000 or 24000). The audio goes out in
100 ms appends; a turn is printed as ``[mm:ss.s] text`` when the service completes it (with
``--partial``, the text of the turn in progress shows on stderr as it grows).
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from simple_websocket import Client as WebSocket
from simple_websocket import ConnectionClosed
from simple_websocket import ConnectionError as WebSocketRefused

from client.errors import UNREACHABLE, ApiError

log = logging.getLogger("whisper-pipeline")

PIECE_SECONDS = 0.1
TAIL_SILENCE_SECONDS = 1.0  # after the audio, so that the last turn's pause is heard
CLOSE_TIMEOUT = 60.0


def file_pcm(path: Path, rate: int) -> Iterator[bytes]:
    """The file's first audio track as mono s16le at ``rate``, decoded as it is read."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise OSError(f"{path} has no audio track")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                yield bytes(out.planes[0])[: out.samples * 2]
        for out in resampler.resample(None):
            yield bytes(out.planes[0])[: out.samples * 2]


def stream_pcm(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(8192):
        yield chunk


def pieces(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Equal pieces of ``size`` bytes (an even number), the last one shorter."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield buffer[:size]
            buffer = buffer[size:]
    if buffer:
        yield buffer[: len(buffer) - len(buffer) % 2]


def realtime_url(base: str, *, model: str | None, record: bool) -> str:
    parts = urlsplit(base.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query: dict[str, str] = {"intent": "transcription"}
    if model:
        query["model"] = model
    if record:
        query["record"] = "true"
    return urlunsplit((scheme, parts.netloc, parts.path + "/v1/realtime", urlencode(query), ""))


def _clock(ms: int) -> str:
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{int(minutes):02d}:{seconds:04.1f}"


class LiveRun:
    def __init__(self, ws: WebSocket, out: IO[str], err: IO[str], *, partial: bool) -> None:
        self.ws, self.out, self.err, self.partial = ws, out, err, partial
        self.started: dict[str, int] = {}
        self.growing: dict[str, str] = {}
        self.errors = 0
        self.closed: dict[str, Any] | None = None
        self.send_lock = threading.Lock()

    def send(self, event: dict[str, Any]) -> None:
        with self.send_lock:
            self.ws.send(json.dumps(event))

    def feed(self, chunks: Iterator[bytes], rate: int, pace: float, manual: bool) -> None:
        size = int(rate * PIECE_SECONDS) * 2
        began = time.monotonic()
        sent = 0.0
        try:
            silence = [b"\0" * int(rate * TAIL_SILENCE_SECONDS) * 2]
            for piece in pieces(chunks_then(chunks, silence), size):
                self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()})
                sent += len(piece) / 2 / rate
                if pace > 0 and (wait := began + sent / pace - time.monotonic()) > 0:
                    time.sleep(wait)
            if manual:
                self.send({"type": "input_audio_buffer.commit"})
            self.send({"type": "session.close"})
        except (ConnectionClosed, OSError):  # the service closed first: the reader tells why
            pass

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        item = str(event.get("item_id", ""))
        if kind == "input_audio_buffer.speech_started":
            self.started[item] = int(event.get("audio_start_ms") or 0)
        elif kind == "conversation.item.input_audio_transcription.delta":
            self.growing[item] = self.growing.get(item, "") + str(event.get("delta") or "")
            if self.partial:
                print(f"\r\x1b[K… {self.growing[item][-100:]}", end="", file=self.err, flush=True)
        elif kind == "conversation.item.input_audio_transcription.completed":
            if self.partial:
                print("\r\x1b[K", end="", file=self.err, flush=True)
            text = str(event.get("transcript") or "").strip()
            if text:
                at = self.started.get(item)
                print(f"[{_clock(at)}] {text}" if at is not None else text, file=self.out, flush=True)
        elif kind == "error":
            error = event.get("error") or {}
            self.errors += 1
            print(f"whisper-pipeline: {error.get('message')} ({error.get('code')})", file=self.err, flush=True)
        elif kind == "session.closed":
            self.closed = event


def chunks_then(chunks: Iterator[bytes], tail: list[bytes]) -> Iterator[bytes]:
    yield from chunks
    yield from tail


def run_live(base_url: str, api_key: str | None, chunks: Iterator[bytes], *, rate: int, pace: float,
             model: str | None, language: str | None, prompt: str | None, manual: bool, record: bool,
             partial: bool, out: IO[str], err: IO[str]) -> dict[str, Any]:
    """Stream ``chunks`` (mono s16le at ``rate``) and print turns; the ``session.closed``
    event (with the recording's job under ``recording``), or ApiError."""
    url = realtime_url(base_url, model=model, record=record)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        ws = WebSocket.connect(url, headers=headers, max_message_size=16 * 2**20)
    except WebSocketRefused as exc:
        status = exc.status_code if isinstance(exc.status_code, int) else None
        raise ApiError(status, f"http_{status}" if status else UNREACHABLE,
                       f"the service refused the live session (HTTP {status})" if status
                       else f"cannot reach {url}") from None
    except OSError as exc:
        raise ApiError(None, UNREACHABLE, f"cannot reach {url}: {exc}") from None
    run = LiveRun(ws, out, err, partial=partial)
    transcription: dict[str, Any] = {}
    if language:
        transcription["language"] = language
    if prompt:
        transcription["prompt"] = prompt
    run.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": rate}, "transcription": transcription,
        "turn_detection": None if manual else {"type": "server_vad"}}}}})
    feeder = threading.Thread(target=run.feed, args=(chunks, rate, pace, manual), daemon=True)
    feeder.start()
    try:
        while run.closed is None:
            try:
                message = ws.receive(timeout=CLOSE_TIMEOUT)
            except ConnectionClosed:
                break
            if message is None:
                raise ApiError(None, "timeout", f"the service said nothing for {CLOSE_TIMEOUT:.0f} s")
            run.handle(json.loads(message))
    finally:
        try:
            ws.close()
        # The library's reader thread may close the socket between its check and our close.
        except (ConnectionClosed, OSError):
            pass
    if run.closed is None:
        raise ApiError(None, UNREACHABLE, "the live session ended without session.closed")
    return run.closed


def source(path: str, rate: int) -> Iterator[bytes]:
    if path == "-":
        return stream_pcm(sys.stdin.buffer)
    return file_pcm(Path(path), rate)
