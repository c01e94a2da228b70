"""Small helpers shared by the tests."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import jiwer
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_AUDIO = ROOT.parent / "shared" / "audio"

JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
SPEECH_EN = FIXTURES / "speech_en.wav"
SPEECH_EN_TEXT = (FIXTURES / "speech_en.txt").read_text().strip()

T = TypeVar("T")


def shared_audio(name: str) -> Path:
    """A recording of ../shared/audio, or the test skipped where the checkout has none beside it."""
    path = SHARED_AUDIO / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: ../shared/audio is only present beside the project's checkout")
    return path


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s']", " ", text.lower())).strip()


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


class Ticks:
    """A clock that moves on by a millisecond each time it is read: each timestamp a store
    writes is distinct, without waiting."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def says_number(text: str, number: str = "42") -> bool:
    """Whether ``text`` holds ``number`` as a number of its own: not inside a longer one, a
    float's digits (a stored probability) or a caption's timestamp."""
    return re.search(rf"(?<![\d.,:]){re.escape(number)}(?!\d|[.,:]\d)", text) is not None


def wait_for(check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def make_video(path: Path, audio: Path | None, seconds: float = 2.0, container: str = "mp4") -> Path:
    """Write a small video (a moving grey picture) with the audio of ``audio``, or none."""
    import av

    from pipeline.media import decode_audio

    pcm = decode_audio(audio) if audio is not None else None
    if pcm is not None:
        seconds = len(pcm) / 16000
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = None
        if pcm is not None:
            sound = out.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), (i * 7) % 255, dtype=np.uint8), format="rgb24"
            )
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None and pcm is not None:
            samples = (pcm * 32767).astype(np.int16)
            step = 1024
            for start in range(0, len(samples), step):
                chunk = samples[start : start + step].reshape(1, -1)
                sound_frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                sound_frame.sample_rate = 16000
                sound_frame.pts = start
                for packet in sound.encode(sound_frame):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def silent_wav_header(path: Path) -> Path:
    """A WAV file whose header is valid but whose data chunk holds no samples."""
    import struct

    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 16000, 32000, 2, 16)
    data = struct.pack("<4sI", b"data", 0)
    body = b"WAVE" + fmt + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


class Receiver:
    """A webhook receiver on loopback, for the tests that deliver to one.

    Each POST is answered from ``script``, status codes or (status, headers) pairs, and with
    200 once the script is spent; or, where ``answer`` is given, by ``answer(seconds since the
    first request)``. Records each request as (headers, body, monotonic time) in ``requests``
    and the status it got in ``answers``; ``received`` is set at the first 2xx answer."""

    def __init__(self, script: Sequence[int | tuple[int, dict[str, str]]] = (), *,
                 answer: Callable[[float], tuple[int, dict[str, str]]] | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.script = list(script)
        self.requests: list[tuple[dict[str, str], bytes, float]] = []
        self.answers: list[int] = []
        self.received = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.monotonic()
                with receiver.lock:
                    since = now - receiver.requests[0][2] if receiver.requests else 0.0
                    if answer is not None:
                        status, headers = answer(since)
                    else:
                        step = receiver.script.pop(0) if receiver.script else 200
                        status, headers = (step, {}) if isinstance(step, int) else step
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body, now))
                    receiver.answers.append(status)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if 200 <= status < 300:
                    receiver.received.set()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def long_speech(path: Path, repeats: int) -> Path:
    """The project's fixture said ``repeats`` times in a row, as one 16 kHz WAV file."""
    import wave

    from pipeline.media import decode_audio

    pcm = (decode_audio(SPEECH_EN) * 32767).astype(np.int16)
    gap = np.zeros(8000, dtype=np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        for _ in range(repeats):
            out.writeframes(pcm.tobytes() + gap.tobytes())
    return path
