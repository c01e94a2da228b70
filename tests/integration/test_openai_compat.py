"""The official `openai` client, pointed at the running service."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import srt
from openai import APIStatusError, OpenAI, UnprocessableEntityError

from tests.support.helpers import FIXTURES, SHARED_AUDIO, SPEECH_EN, SPEECH_EN_TEXT, long_speech, normalise, wer
from tests.support.stack import Stack


@pytest.fixture
def client(live: Stack) -> OpenAI:
    return OpenAI(base_url=f"{live.url}/v1", api_key="not-needed-without-API_KEYS", max_retries=0)


def test_transcriptions_in_every_format(client: OpenAI) -> None:
    with SPEECH_EN.open("rb") as fh:
        plain = client.audio.transcriptions.create(model="whisper-1", file=fh)
    assert wer(SPEECH_EN_TEXT, plain.text) <= 0.15

    with SPEECH_EN.open("rb") as fh:
        text = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="text")
    assert isinstance(text, str) and wer(SPEECH_EN_TEXT, text) <= 0.15

    for fmt in ("srt", "vtt"):
        with SPEECH_EN.open("rb") as fh:
            subtitles = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format=fmt)
        assert isinstance(subtitles, str)
        if fmt == "srt":
            assert list(srt.parse(subtitles))
        else:
            assert subtitles.startswith("WEBVTT")

    with SPEECH_EN.open("rb") as fh:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=fh, response_format="verbose_json", language="en",
            prompt="weather report", temperature=0.0, timestamp_granularities=["word", "segment"])
    assert verbose.language == "en" and verbose.duration == pytest.approx(5.9, abs=0.2)
    assert wer(SPEECH_EN_TEXT, verbose.text) <= 0.15
    assert verbose.segments and verbose.segments[0].avg_logprob < 0
    assert verbose.words and verbose.words[0].end >= verbose.words[0].start

    with SPEECH_EN.open("rb") as fh:
        segments_only = client.audio.transcriptions.create(
            model="whisper-1", file=fh, response_format="verbose_json")
    assert segments_only.segments and not getattr(segments_only, "words", None)


def test_translations_into_english(client: OpenAI) -> None:
    with (FIXTURES / "speech_de.wav").open("rb") as fh:
        # The client marks translations deprecated; the endpoint is what older clients call.
        result = client.audio.translations.create(model="whisper-1", file=fh)
    assert {"morning", "weather", "today"} & set(result.text.lower().replace(",", " ").split())


def test_errors_reach_the_client_as_exceptions(client: OpenAI) -> None:
    with pytest.raises(UnprocessableEntityError) as bad_format:
        with SPEECH_EN.open("rb") as fh:
            client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="docx")  # type: ignore[arg-type]
    assert "response_format" in str(bad_format.value)
    with pytest.raises(APIStatusError) as not_audio:
        client.audio.transcriptions.create(model="whisper-1", file=("notes.txt", b"hello " * 100))
    assert not_audio.value.status_code == 415
    assert "not audio or video" in not_audio.value.message


def _streamed(client: OpenAI, path: Path, **options: object) -> tuple[list[str], str]:
    deltas, done = [], None
    with path.open("rb") as fh:
        events = client.audio.transcriptions.create(model="whisper-1", file=fh, stream=True, **options)  # type: ignore[call-overload]
        for event in events:
            if event.type == "transcript.text.delta":
                assert done is None, "a delta after the done event"
                deltas.append(event.delta)
            else:
                assert event.type == "transcript.text.done"
                done = event.text
    assert done is not None, "the stream ended without transcript.text.done"
    return deltas, done


def test_stream_sends_deltas_then_the_whole_text(client: OpenAI, live: Stack) -> None:
    meeting = SHARED_AUDIO / "meetings" / "dev00.wav"
    if not meeting.is_file():
        pytest.skip(f"{meeting} is absent")
    deltas, done = _streamed(client, meeting)
    # A minute of meeting decodes in several segments: the text arrives in several deltas,
    # and together they are the whole text.
    assert len(deltas) >= 3
    assert normalise("".join(deltas)) == normalise(done)
    whole = client.audio.transcriptions.create(model="whisper-1", file=meeting.open("rb"))
    assert done == whole.text  # the cache's transcript, as the stream's was stored

    # Asked again, the cache answers: the same text, streamed at once from the stored segments.
    again, again_done = _streamed(client, meeting)
    assert again_done == done and len(again) == len(deltas)
    newest = live.get("/api/transcribe/async?limit=1").json()["jobs"][0]
    assert newest["cached"] is True

    text_deltas, text_done = _streamed(client, SPEECH_EN, response_format="text", language="en")
    assert wer(SPEECH_EN_TEXT, text_done) <= 0.15 and text_deltas


def test_stream_refuses_formats_openai_does_not_stream(client: OpenAI, live: Stack) -> None:
    before = live.get("/api/transcribe/async?limit=1").json()["jobs"]
    for fmt in ("srt", "vtt", "verbose_json", "diarized_json"):
        with pytest.raises(UnprocessableEntityError) as refused, SPEECH_EN.open("rb") as fh:
            client.audio.transcriptions.create(model="whisper-1", file=fh, stream=True,  # type: ignore[call-overload]
                                               response_format=fmt)
        assert refused.value.body["field"] == "response_format"  # type: ignore[index]
        assert "stream" in refused.value.message
    assert live.get("/api/transcribe/async?limit=1").json()["jobs"] == before  # no job left behind


def test_a_stream_whose_client_leaves_cancels_its_job(live: Stack, tmp_path: Path) -> None:
    # About two minutes of speech: a job that stays running well after the client has gone. A
    # 30 s meeting excerpt could finish on a quiet machine before the closed socket was noticed.
    recording = long_speech(tmp_path / "long.wav", 20)
    prepared = requests.Request("POST", f"{live.url}/v1/audio/transcriptions", data={"stream": "true"},
                                files={"file": ("long.wav", recording.read_bytes())}).prepare()
    host, port = urlsplit(live.url).hostname, urlsplit(live.url).port
    head = "".join(f"{k}: {v}\r\n" for k, v in prepared.headers.items())
    assert isinstance(prepared.body, bytes)
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode()
                     + prepared.body)
        received = b""
        while b"data:" not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        assert b"200 OK" in received.split(b"\r\n")[0] and b"text/event-stream" in received
        assert b"transcript.text.delta" in received
        task_id = live.get("/api/transcribe/async?limit=1").json()["jobs"][0]["task_id"]
        sock.shutdown(socket.SHUT_RDWR)
    # The next segment's write fails on the closed socket, and the job stops.
    job = live.wait_final(task_id, timeout=120)
    assert job["status"] == "cancelled"
