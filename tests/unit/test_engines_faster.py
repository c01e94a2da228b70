"""pipeline/worker/engines/faster.py: faster-whisper's segments and info as the service's transcript,
on a stand-in for the loaded model (no weights are loaded)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from faster_whisper.transcribe import Segment as RawSegment
from faster_whisper.transcribe import Word as RawWord

from pipeline.errors import JobCancelled, ModelNotFound, TranscriptionError
from pipeline.media import SAMPLE_RATE
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Word
from pipeline.worker.engines.faster import FasterWhisperEngine


def raw(index: int, start: float, end: float, text: str, *, words: list[RawWord] | None = None,
        temperature: float | None = 0.0) -> RawSegment:
    return RawSegment(id=index + 1, seek=0, start=start, end=end, text=text, tokens=[50364 + index, 400],
                      avg_logprob=-0.25, compression_ratio=1.5, no_speech_prob=0.01, words=words,
                      temperature=temperature)


class LoadedModel:
    """What the engine uses of faster_whisper.WhisperModel: ``model.is_multilingual`` and a lazy
    ``transcribe``; it notes each segment as it is decoded, in ``log``."""

    def __init__(self, segments: list[RawSegment], *, multilingual: bool = False,
                 failure: Exception | None = None) -> None:
        self.model = SimpleNamespace(is_multilingual=multilingual)
        self.segments = segments
        self.failure = failure
        self.calls: list[dict[str, Any]] = []
        self.log: list[str] = []

    def _decode(self) -> Iterator[RawSegment]:
        for segment in self.segments:
            self.log.append(f"decoded {segment.id}")
            yield segment

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Iterator[RawSegment], SimpleNamespace]:
        self.calls.append(kwargs)
        if self.failure is not None:
            raise self.failure
        return self._decode(), SimpleNamespace(language="en", language_probability=0.987654)


def engine_on(model: LoadedModel, model_name: str = "tiny.en") -> FasterWhisperEngine:
    engine = FasterWhisperEngine.__new__(FasterWhisperEngine)  # skips loading weights
    engine.model_name, engine.device, engine.batch_setting = model_name, "cpu", 0
    engine.model = model
    return engine


AUDIO = np.zeros(4 * SAMPLE_RATE, dtype=np.float32)


def ignore(segment: Segment) -> None:
    return None


def test_segments_and_words_are_converted_with_rounded_times_and_probabilities() -> None:
    words = [RawWord(0.123456, 0.5004, " And", 0.987654), RawWord(0.5004, 1.0, " so", 0.5)]
    model = LoadedModel([raw(0, 0.0, 1.23456, " And so", words=words),
                         raw(1, 1.23456, 3.0, " my fellow.", temperature=None)])
    transcript = engine_on(model).transcribe(AUDIO, TranscribeOptions(), ignore)
    first, second = transcript.segments
    assert first == Segment(id=0, start=0.0, end=1.235, text=" And so", tokens=(50364, 400), temperature=0.0,
                            avg_logprob=-0.25, compression_ratio=1.5, no_speech_prob=0.01,
                            words=(Word(0.123, 0.5, " And", 0.9877), Word(0.5, 1.0, " so", 0.5)))
    # Ids count from 0 whatever faster-whisper numbered; no temperature reads as 0; no words stay None.
    assert (second.id, second.start, second.temperature, second.words) == (1, 1.235, 0.0, None)
    assert (transcript.text, transcript.language, transcript.language_probability) == (
        "And so my fellow.", "en", 0.9877)
    assert (transcript.engine, transcript.model, transcript.device, transcript.duration) == (
        "faster-whisper", "tiny.en", "cpu", 4.0)


def test_the_request_options_reach_the_sequential_decoder_for_short_audio() -> None:
    model = LoadedModel([])
    options = TranscribeOptions(language="en", beam_size=2, vad_filter=True, hotwords="ComfyUI",
                                initial_prompt="Hello.", word_timestamps=True)
    engine_on(model).transcribe(AUDIO, options, ignore)
    [call] = model.calls
    assert call["vad_filter"] is True and call["language"] == "en" and call["beam_size"] == 2
    assert call["hotwords"] == "ComfyUI" and call["initial_prompt"] == "Hello." and call["word_timestamps"] is True


def test_each_segment_is_reported_as_soon_as_it_is_decoded() -> None:
    model = LoadedModel([raw(0, 0.0, 1.0, " a"), raw(1, 1.0, 2.0, " b")])
    engine_on(model).transcribe(AUDIO, TranscribeOptions(), lambda segment: model.log.append(f"seen {segment.id}"))
    assert model.log == ["decoded 1", "seen 0", "decoded 2", "seen 1"]


def test_a_callback_that_raises_stops_decoding() -> None:
    model = LoadedModel([raw(i, float(i), i + 1.0, " x") for i in range(3)])

    def cancel(segment: Segment) -> None:
        raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        engine_on(model).transcribe(AUDIO, TranscribeOptions(), cancel)
    assert model.log == ["decoded 1"]


def test_an_english_only_model_refuses_a_forced_language_before_decoding() -> None:
    model = LoadedModel([raw(0, 0.0, 1.0, " x")])
    with pytest.raises(ModelNotFound, match=r"tiny\.en only knows English"):
        engine_on(model).transcribe(AUDIO, TranscribeOptions(language="de"), ignore)
    assert model.calls == []
    multilingual = LoadedModel([], multilingual=True)
    engine_on(multilingual, "base").transcribe(AUDIO, TranscribeOptions(language="de"), ignore)
    assert multilingual.calls[0]["language"] == "de"


def test_a_value_error_from_the_decoder_is_a_transcription_error() -> None:
    model = LoadedModel([], failure=ValueError("bad audio"))
    with pytest.raises(TranscriptionError, match="bad audio"):
        engine_on(model).transcribe(AUDIO, TranscribeOptions(), ignore)


def test_a_value_error_while_segments_are_decoded_is_a_transcription_error_too() -> None:
    # faster-whisper decodes lazily: what it refuses in a later window is raised by the iteration.
    model = LoadedModel([raw(0, 0.0, 1.0, " a")])

    def decode_then_refuse() -> Iterator[RawSegment]:
        yield model.segments[0]
        raise ValueError("a window the decoder refuses")

    model._decode = decode_then_refuse  # type: ignore[method-assign]
    seen: list[int] = []
    with pytest.raises(TranscriptionError, match="a window the decoder refuses"):
        engine_on(model).transcribe(AUDIO, TranscribeOptions(), lambda segment: seen.append(segment.id))
    assert seen == [0]
