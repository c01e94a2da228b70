"""pipeline/worker/engines/openai_whisper.py: option mapping, segment conversion, the progress bar that
reports each window's segments, and language probability, on a stand-in ``whisper`` module."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pipeline.errors import JobCancelled, TranscriptionError
from pipeline.media import SAMPLE_RATE
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Word
from pipeline.worker.engines import openai_whisper
from pipeline.worker.engines.openai_whisper import (
    HOTWORDS_WARNING,
    OpenAIWhisperEngine,
    _segment,
    _WindowBar,
    prompt_with_hotwords,
)

AUDIO = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)


def raw(start: float, end: float, text: str, **extra: Any) -> dict[str, Any]:
    return {"start": start, "end": end, "text": text, "tokens": [1, 2], "temperature": 0.0, "avg_logprob": -0.3,
            "compression_ratio": 1.2, "no_speech_prob": 0.05, **extra}


@dataclass
class FakeWhisper:
    """Stands in for the ``whisper`` package. Its ``transcribe`` works as openai-whisper's does:
    each window's segments join a local ``all_segments``, then the window's bar is updated; the
    ``trailing`` segments arrive after the last update."""

    windows: list[list[dict[str, Any]]] = field(default_factory=list)
    trailing: list[dict[str, Any]] = field(default_factory=list)
    language: str | None = "en"
    failure: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def transcribe(self, model: Any, audio: np.ndarray, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.failure is not None:
            raise self.failure
        all_segments: list[dict[str, Any]] = []
        with _WindowBar(total=len(self.windows)) as bar:
            for index, window in enumerate(self.windows):
                self.log.append(f"window {index}")
                all_segments.extend(window)
                bar.update(1)
        all_segments.extend(self.trailing)
        return {"segments": all_segments, "language": self.language}

    audio = SimpleNamespace(N_SAMPLES=480_000, N_FRAMES=3000)

    def pad_or_trim(self, mel: str, length: int) -> SimpleNamespace:
        return SimpleNamespace(to=lambda device: f"{mel}[:{length}] on {device}")

    def log_mel_spectrogram(self, audio: np.ndarray, n_mels: int, padding: int) -> str:
        return f"mel({n_mels}, +{padding})"


@pytest.fixture
def whisper(monkeypatch: pytest.MonkeyPatch) -> FakeWhisper:
    fake = FakeWhisper()
    monkeypatch.setitem(sys.modules, "whisper", fake)
    return fake


def engine_on(*, multilingual: bool = False, fp16: bool = False,
              detect: Callable[[Any], tuple[Any, dict[str, float]]] | None = None) -> OpenAIWhisperEngine:
    engine = OpenAIWhisperEngine.__new__(OpenAIWhisperEngine)  # skips loading weights
    engine.model_name, engine.device, engine.fp16 = "tiny.en", "cpu", fp16
    engine.model = SimpleNamespace(is_multilingual=multilingual, dims=SimpleNamespace(n_mels=80), device="cpu",
                                   detect_language=detect)
    return engine


def ignore(segment: Segment) -> None:
    return None


@pytest.mark.parametrize(("prompt", "hotwords", "expected"), [
    ("Hello.", "ComfyUI, Dramatiq", "Hello. ComfyUI, Dramatiq"),
    (None, "ComfyUI", "ComfyUI"),
    ("Hello.", None, "Hello."),
    (None, None, None),
    ("", "", None),
])
def test_hotwords_follow_the_initial_prompt(prompt: str | None, hotwords: str | None, expected: str | None) -> None:
    assert prompt_with_hotwords(TranscribeOptions(initial_prompt=prompt, hotwords=hotwords)) == expected


def test_a_raw_segment_is_converted_with_its_times_mapped_back_and_rounded() -> None:
    # Start times move by 10 s and end times by 20 s, so each field shows which mapping it took.
    def restore(t: float, is_end: bool) -> float:
        return t + (20.0 if is_end else 10.0)

    words = [{"start": 0.11111, "end": 0.55555, "word": " Hi", "probability": 0.123456}]
    segment = _segment(raw(0.1, 0.9, " Hi", words=words), 3, restore)
    assert segment == Segment(id=3, start=10.1, end=20.9, text=" Hi", tokens=(1, 2), temperature=0.0,
                              avg_logprob=-0.3, compression_ratio=1.2, no_speech_prob=0.05,
                              words=(Word(10.111, 20.556, " Hi", 0.1235),))


def test_a_sparse_raw_segment_takes_defaults_and_no_words() -> None:
    segment = _segment({"start": 1, "end": 2, "text": " x", "words": []}, 0, lambda t, is_end: t)
    assert segment == Segment(id=0, start=1.0, end=2.0, text=" x")
    assert segment.words is None


def test_the_window_bar_hands_each_update_only_the_segments_it_has_not_seen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(openai_whisper._local, "listener", handed.append, raising=False)
    all_segments: list[dict[str, Any]] = [raw(0, 1, " a")]  # read by the bar from this frame
    bar = _WindowBar(total=2)
    bar.update()
    all_segments.extend([raw(1, 2, " b"), raw(2, 3, " c")])
    bar.update()
    bar.update()
    assert [[s["text"] for s in batch] for batch in handed] == [[" a"], [" b", " c"], []]
    assert (bar.total, bar.n) == (2, 3)


def test_the_window_bar_without_a_listener_only_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_whisper._local, "listener", None, raising=False)
    bar = _WindowBar()
    bar.update(5)
    assert (bar.total, bar.n) == (0, 5)


def test_segments_are_reported_window_by_window_and_the_last_ones_after(whisper: FakeWhisper) -> None:
    whisper.windows = [[raw(0, 1, " a")], [raw(1, 2, " b"), raw(2, 3, " c")]]
    whisper.trailing = [raw(3, 3.5, " d")]
    seen: list[Segment] = []

    def report(segment: Segment) -> None:
        whisper.log.append(f"seen {segment.text.strip()}")
        seen.append(segment)

    transcript = engine_on().transcribe(AUDIO, TranscribeOptions(), report)
    assert whisper.log == ["window 0", "seen a", "window 1", "seen b", "seen c", "seen d"]
    assert [s.id for s in transcript.segments] == [0, 1, 2, 3] and list(transcript.segments) == seen
    assert transcript.text == "a b c d" and transcript.engine == "openai-whisper"
    assert openai_whisper._local.listener is None


@pytest.mark.parametrize(("temperature", "beam_size", "best_of"), [(0.0, 3, None), (0.4, None, 3)])
def test_beam_search_at_temperature_zero_and_sampling_above(
        whisper: FakeWhisper, temperature: float, beam_size: int | None, best_of: int | None) -> None:
    options = TranscribeOptions(temperature=temperature, beam_size=3)
    engine_on(fp16=True).transcribe(AUDIO, options, ignore)
    [call] = whisper.calls
    assert (call["beam_size"], call["best_of"], call["temperature"]) == (beam_size, best_of, temperature)
    assert call["fp16"] is True and call["verbose"] is None


def test_hotwords_go_into_the_prompt_and_the_transcript_says_so(whisper: FakeWhisper) -> None:
    options = TranscribeOptions(initial_prompt="Notes.", hotwords="ComfyUI", word_timestamps=True, task="translate",
                                condition_on_previous_text=True)
    transcript = engine_on().transcribe(AUDIO, options, ignore)
    [call] = whisper.calls
    assert call["initial_prompt"] == "Notes. ComfyUI" and call["word_timestamps"] is True
    assert call["task"] == "translate" and call["condition_on_previous_text"] is True
    assert transcript.warnings == (HOTWORDS_WARNING,)
    assert engine_on().transcribe(AUDIO, TranscribeOptions(), ignore).warnings == ()


def test_the_language_probability_comes_from_detection_only_when_none_was_forced(whisper: FakeWhisper) -> None:
    whisper.language = "de"
    probed: list[Any] = []

    def detect(mel: Any) -> tuple[None, dict[str, float]]:
        probed.append(mel)
        return None, {"de": 0.912345, "en": 0.05}

    transcript = engine_on(multilingual=True, detect=detect).transcribe(AUDIO, TranscribeOptions(), ignore)
    assert (transcript.language, transcript.language_probability) == ("de", 0.9123)
    # The features whisper.transcribe detects from; what was detected is handed to it, so the
    # encoder does not run a second time for the language.
    assert probed == ["mel(80, +480000)[:3000] on cpu"]
    assert whisper.calls[-1]["language"] == "de"
    forced = engine_on(multilingual=True, detect=detect).transcribe(AUDIO, TranscribeOptions(language="de"), ignore)
    assert forced.language_probability is None and len(probed) == 1


def test_a_failed_language_probability_is_left_out_with_a_warning(
        whisper: FakeWhisper, caplog: pytest.LogCaptureFixture) -> None:
    def detect(mel: Any) -> tuple[None, dict[str, float]]:
        raise RuntimeError("no GPU memory")

    with caplog.at_level(logging.WARNING, logger=openai_whisper.__name__):
        transcript = engine_on(multilingual=True, detect=detect).transcribe(AUDIO, TranscribeOptions(), ignore)
    assert transcript.language_probability is None and transcript.language == "en"
    assert whisper.calls[-1]["language"] is None  # whisper.transcribe detects it, as it would alone
    assert "language probability unavailable (whisper.transcribe detects the language): no GPU memory" \
        in caplog.text


def test_with_no_language_in_the_result_the_forced_one_or_english_is_used(whisper: FakeWhisper) -> None:
    whisper.language = None
    assert engine_on().transcribe(AUDIO, TranscribeOptions(), ignore).language == "en"
    assert engine_on(multilingual=True).transcribe(AUDIO, TranscribeOptions(language="fr"), ignore).language == "fr"


def test_a_value_error_is_a_transcription_error_and_a_cancel_stops_decoding(whisper: FakeWhisper) -> None:
    whisper.failure = ValueError("bad input")
    with pytest.raises(TranscriptionError, match="bad input"):
        engine_on().transcribe(AUDIO, TranscribeOptions(), ignore)
    assert openai_whisper._local.listener is None

    whisper.failure = None
    whisper.windows = [[raw(0, 1, " a")], [raw(1, 2, " b")]]

    def cancel(segment: Segment) -> None:
        raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        engine_on().transcribe(AUDIO, TranscribeOptions(), cancel)
    assert whisper.log == ["window 0"]
    assert openai_whisper._local.listener is None
