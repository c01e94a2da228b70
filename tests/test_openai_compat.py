"""The official `openai` client, pointed at the running service."""

from __future__ import annotations

import pytest
import srt
from openai import APIStatusError, OpenAI, UnprocessableEntityError

from tests.conftest import Stack
from tests.helpers import FIXTURES, SPEECH_EN, SPEECH_EN_TEXT, wer

pytestmark = pytest.mark.integration


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
