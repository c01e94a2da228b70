"""Live transcription over /v1/realtime, through the real stack (API, RabbitMQ, Redis, the live
worker): with the official openai client, and with a raw WebSocket client for what a client
may get wrong."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import OpenAI
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from pipeline import keys
from pipeline.media import decode_audio
from tests.support.helpers import JFK_TEXT, SPEECH_EN, SPEECH_EN_TEXT, wait_for, wer
from tests.support.stack import Stack


def pcm(path: Path, rate: int) -> bytes:
    """The recording as 16-bit mono PCM at ``rate``."""
    audio = decode_audio(path)
    if rate != 16_000:
        positions = np.arange(0, len(audio) * rate // 16_000) * (16_000 / rate)
        audio = np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def pieces(data: bytes, rate: int, seconds: float = 0.1) -> Iterator[str]:
    step = int(rate * seconds) * 2
    for start in range(0, len(data), step):
        yield base64.b64encode(data[start:start + step]).decode()


def words(text: str) -> list[str]:
    """The words of ``text`` as the live worker compares them: case and punctuation aside."""
    return [re.sub(r"[^\w']", "", w.lower()) for w in text.split()]


def ws_url(stack: Stack) -> str:
    return stack.url.replace("http://", "ws://") + "/v1"


@pytest.fixture
def openai_client(live: Stack) -> OpenAI:
    return OpenAI(base_url=f"{live.url}/v1", websocket_base_url=ws_url(live), api_key="not-needed", max_retries=0)


def feed(send: Any, data: bytes, rate: int, *, pace: float, tail_silence: float = 1.5) -> None:
    """Appends of 100 ms at ``pace`` times real time, then silence, then session.close."""
    started = time.monotonic()
    sent = 0.0
    for piece in pieces(data + b"\0" * int(rate * tail_silence) * 2, rate):
        send(json.dumps({"type": "input_audio_buffer.append", "audio": piece}))
        sent += 0.1
        wait = started + sent / pace - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    send(json.dumps({"type": "session.close"}))


def test_the_openai_client_transcribes_speech_as_it_is_spoken(openai_client: OpenAI, jfk: Path) -> None:
    audio = pcm(jfk, 24_000)
    events: list[Any] = []
    with openai_client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        created = conn.recv()
        assert created.type == "session.created"
        conn.session.update(session={
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "transcription": {"model": "whisper-1", "language": "en"},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}})
        updated = conn.recv()
        assert updated.type == "session.updated", updated
        sender = threading.Thread(target=feed, args=(conn.send_raw, audio, 24_000), kwargs={"pace": 2.0})
        sender.start()
        for event in conn:
            events.append(event)
            if event.type == "session.closed":
                break
        sender.join()
    kinds = [e.type for e in events]
    assert "error" not in kinds, [e for e in events if e.type == "error"]
    completed = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
    assert completed, kinds
    # The whole speech, turn by turn, is what it should be.
    assert wer(JFK_TEXT, " ".join(e.transcript for e in completed)) <= 0.25
    # Turns end at pauses: each has its start, stop and commit, in that order, before its text.
    for turn in completed:
        mine = [e.type for e in events if getattr(e, "item_id", None) == turn.item_id]
        assert mine.index("input_audio_buffer.speech_started") < mine.index("input_audio_buffer.speech_stopped") \
            < mine.index("input_audio_buffer.committed") < mine.index(turn.type)
    assert len(completed) >= 2, "JFK pauses between phrases: more than one turn"
    deltas: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event.type == "conversation.item.input_audio_transcription.delta":
            deltas[event.item_id].append(event.delta)
    # Deltas only extend. Where the completed text begins with what they sent (case and
    # punctuation aside), the last delta completes it; where the last decode heard the turn
    # otherwise, what was sent stays as it was and the completed text is the decode's.
    agreeing = 0
    for turn in completed:
        sent, final = words("".join(deltas[turn.item_id])), words(turn.transcript)
        if final[:len(sent)] == sent:
            assert sent == final, (sent, final)
            agreeing += 1
    assert agreeing >= 1
    assert events[-1].type == "session.closed"


def raw(stack: Stack, query: str = "intent=transcription") -> ClientConnection:
    return connect(f"{ws_url(stack)}/realtime?{query}", open_timeout=10, close_timeout=5)


def next_event(ws: ClientConnection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event: dict[str, Any] = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if event["type"] == kind:
            return event
        assert event["type"] != "error" or kind == "error", event


def test_bad_client_events_get_an_error_and_the_session_stays_open(live: Stack) -> None:
    with raw(live) as ws:
        session = next_event(ws, "session.created")["session"]
        assert session["type"] == "transcription"
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}

        def refused(message: str | bytes) -> dict[str, Any]:
            ws.send(message)
            error: dict[str, Any] = next_event(ws, "error")["error"]
            return error

        assert refused("this is not json")["code"] == "invalid_json"
        assert refused(b"\x00\x01binary")["code"] == "invalid_json"
        assert refused(json.dumps([1, 2]))["code"] == "missing_type"
        unknown = refused(json.dumps({"type": "response.create", "event_id": "evt_1"}))
        assert unknown["code"] == "unknown_event_type" and unknown["event_id"] == "evt_1"
        bad64 = refused(json.dumps({"type": "input_audio_buffer.append", "audio": "not base64!"}))
        assert (bad64["code"], bad64["param"]) == ("invalid_value", "audio")
        big = base64.b64encode(b"\0" * (24_000 * 2 * 16)).decode()  # 16 s in one append
        assert refused(json.dumps({"type": "input_audio_buffer.append", "audio": big}))["code"] == "audio_too_large"
        fmt = refused(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}}}))
        assert fmt["code"] == "invalid_value" and fmt["param"] == "session.audio.input.format"
        model = refused(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {"transcription": {"model": "/etc/passwd"}}}}}))
        assert model["param"] == "session.audio.input.transcription.model"
        vad = refused(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}}))
        assert vad["param"] == "session.audio.input.turn_detection.type"
        assert refused(json.dumps({"type": "input_audio_buffer.commit"}))["code"] == "input_audio_buffer_commit_empty"

        # Faster than real time: ten seconds ahead are allowed (LIVE_MAX_AHEAD_SECONDS), not 13.
        second = base64.b64encode(b"\0" * 24_000 * 2).decode()
        too_fast, sent = None, 0
        while too_fast is None and sent < 13:
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": second}))
            sent += 1
            with contextlib.suppress(TimeoutError):
                too_fast = json.loads(ws.recv(timeout=0.1))["error"]
        assert too_fast is not None and sent >= 10
        assert too_fast["code"] == "audio_too_fast" and "LIVE_MAX_AHEAD_SECONDS" in too_fast["message"]

        # Still open, and still serving: G.711 is taken, and clearing answers.
        ws.send(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"},
                                                          "turn_detection": None}}}}))
        updated = next_event(ws, "session.updated")["session"]
        assert updated["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert updated["audio"]["input"]["turn_detection"] is None
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        next_event(ws, "input_audio_buffer.cleared")


def test_the_route_refuses_what_is_not_a_transcription_session(live: Stack) -> None:
    with pytest.raises(InvalidStatus) as wrong_intent:
        raw(live, "intent=conversation")
    assert wrong_intent.value.response.status_code == 422
    assert json.loads(wrong_intent.value.response.body)["error"]["field"] == "intent"
    plain = live.get("/v1/realtime?intent=transcription")
    assert plain.status_code == 400 and "WebSocket" in plain.json()["error"]["message"]


def test_manual_commit_in_g711_without_turn_detection(live: Stack, jfk: Path) -> None:
    """No turn detection: the client says where a turn ends; pcmu at 8 kHz is decoded as such."""
    audio = decode_audio(jfk)[: 16_000 * 4]  # "And so my fellow Americans"
    linear = (audio[::2] * 32767).astype(np.int32)
    # G.711 mu-law encoding, written out (the test must not lean on the code it checks).
    sign = np.where(linear < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(linear) + 0x84, 0x7FFF)
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    ulaw = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()
    with raw(live) as ws:
        next_event(ws, "session.created")
        ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcmu"}, "turn_detection": None,
            "transcription": {"language": "en", "prompt": "A speech."}}}}}))
        next_event(ws, "session.updated")
        # At real-time pace, so that the turn in progress is decoded again as it grows.
        sender = threading.Thread(target=lambda: [
            (ws.send(json.dumps({"type": "input_audio_buffer.append",
                                 "audio": base64.b64encode(ulaw[start:start + 800]).decode()})), time.sleep(0.1))
            for start in range(0, len(ulaw), 800)])
        sender.start()
        events = []
        while not events or events[-1]["type"] != "conversation.item.input_audio_transcription.delta":
            events.append(json.loads(ws.recv(timeout=60)))
        sender.join()
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        while events[-1]["type"] != "conversation.item.input_audio_transcription.completed":
            events.append(json.loads(ws.recv(timeout=60)))
        kinds = [e["type"] for e in events]
        assert "error" not in kinds and "input_audio_buffer.speech_started" not in kinds, events
        # Text came while the turn grew, before the client committed it.
        assert kinds.index("conversation.item.input_audio_transcription.delta") < kinds.index(
            "input_audio_buffer.committed")
        done = events[-1]
        assert {e["item_id"] for e in events if "item_id" in e} == {done["item_id"]}
        assert wer("And so my fellow Americans", done["transcript"]) <= 0.4
        text = "".join(e["delta"] for e in events if e["type"].endswith(".delta"))
        assert done["transcript"].lower().startswith(text.split()[0].lower())


def test_a_session_goes_on_when_its_worker_is_killed(live: Stack, jfk: Path) -> None:
    """Two live workers; the one holding the session is killed (SIGKILL) after the first turn:
    the client is told, the other goes on, and the completed turns are neither lost nor repeated."""
    service = live.service
    assert service is not None
    service.specs["live-2"] = service.specs["live"]
    service.start("live-2")
    try:
        wait_for(lambda: "ready for action" in service.log_tail("live-2", 200), timeout=120)
        events: list[dict[str, Any]] = []
        with raw(live) as ws:
            session_id = next_event(ws, "session.created")["session"]["id"]
            ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 16000}, "transcription": {"language": "en"}}}}}))
            next_event(ws, "session.updated")
            sender = threading.Thread(target=feed, args=(ws.send, pcm(jfk, 16_000), 16_000), kwargs={"pace": 1.0})
            sender.start()
            killed = None
            while not events or events[-1]["type"] != "session.closed":
                events.append(json.loads(ws.recv(timeout=90)))
                if killed is None and events[-1]["type"].endswith("transcription.completed"):
                    holder = live.redis.get(keys.live_lease_key(session_id))
                    assert holder, "no worker holds the session"
                    killed = int(str(holder).split(":")[1])
                    os.kill(killed, signal.SIGKILL)
            sender.join()
        assert killed is not None
        errors = [e["error"] for e in events if e["type"] == "error"]
        assert [e["code"] for e in errors] == ["live_worker_lost"], errors
        lost_at = next(i for i, e in enumerate(events) if e["type"] == "error")
        completed = [e for e in events if e["type"].endswith("transcription.completed")]
        items = [e["item_id"] for e in completed]
        assert len(items) == len(set(items)), "a turn was completed twice"
        assert any(i > lost_at for i, e in enumerate(events) if e in completed), "nothing after the handover"
        assert wer(JFK_TEXT, " ".join(e["transcript"] for e in completed)) <= 0.35
    finally:
        service.stop("live-2")
        del service.specs["live-2"]
        service.ensure()  # the killed worker's process, started again for the tests after this one


CLI = Path(sys.executable).parent / "whisper-pipeline"


def test_the_cli_streams_a_file_and_records_it(live: Stack, jfk: Path) -> None:
    done = subprocess.run([str(CLI), "--url", live.url, "live", str(jfk), "--pace", "2", "--language", "en",
                           "--record"], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    turns = done.stdout.splitlines()
    assert len(turns) >= 2 and all(re.match(r"\[\d\d:\d\d\.\d\] \S", line) for line in turns), done.stdout
    assert wer(JFK_TEXT, " ".join(line.split("] ", 1)[1] for line in turns)) <= 0.25
    # record: the whole audio became an ordinary job, named on stderr, transcribed like an upload.
    task_id = re.search(r"job ([0-9a-f]{32})", done.stderr)
    assert task_id, done.stderr
    job = live.wait_final(task_id.group(1))
    assert job["status"] == "completed" and abs(float(job["duration"]) - 12.0) < 0.6  # with the tail silence
    assert wer(JFK_TEXT, job["result"]["text"]) <= 0.15  # type: ignore[index]


def test_the_cli_reads_raw_pcm_from_stdin(live: Stack) -> None:
    raw_pcm = pcm(SPEECH_EN, 16_000)
    done = subprocess.run([str(CLI), "--url", live.url, "live", "-", "--pace", "3", "--no-turn-detection"],
                          input=raw_pcm, capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert wer(SPEECH_EN_TEXT, done.stdout.decode().split("] ", 1)[-1]) <= 0.2
