"""pipeline/worker/engines/base.py: the English-only language check and the shared transcript builder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pipeline.errors import ModelNotFound
from pipeline.media import SAMPLE_RATE
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript
from pipeline.worker.engines.base import EngineKey, build_transcript, require_language


@dataclass
class NamedEngine:
    """Just what build_transcript reads of an engine."""

    name: str = "faster-whisper"
    model_name: str = "tiny.en"
    device: str = "cpu"

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions, on_segment: object) -> Transcript:
        raise NotImplementedError


@pytest.mark.parametrize(("multilingual", "language"), [(False, None), (False, "en"), (True, "de"), (True, None)])
def test_languages_a_model_can_transcribe_pass(multilingual: bool, language: str | None) -> None:
    require_language("some-model", multilingual, language)


def test_an_english_only_model_refuses_another_forced_language_naming_both() -> None:
    with pytest.raises(ModelNotFound) as refused:
        require_language("tiny.en", False, "de")
    assert "tiny.en only knows English" in refused.value.message
    assert "language='de'" in refused.value.message and "base" in refused.value.message


def test_the_transcript_joins_the_segments_text_and_times_the_audio_it_was_given() -> None:
    segments = [Segment(0, 0.0, 1.0, " And so,"), Segment(1, 1.0, 2.5, " my fellow Americans. ")]
    audio = np.zeros(SAMPLE_RATE * 2 + 12345, dtype=np.float32)
    options = TranscribeOptions(task="translate")
    transcript = build_transcript(NamedEngine(device="cuda"), audio, options, segments, language="de",
                                  language_probability=0.97, warnings=("a warning",))
    assert transcript == Transcript(
        text="And so, my fellow Americans.", language="de", duration=2.772, segments=tuple(segments),
        language_probability=0.97, task="translate", engine="faster-whisper", model="tiny.en",
        device="cuda", warnings=("a warning",),
    )


def test_no_segments_make_an_empty_transcript() -> None:
    transcript = build_transcript(NamedEngine(), np.zeros(0, np.float32), TranscribeOptions(), [],
                                  language="en", language_probability=None)
    assert (transcript.text, transcript.duration, transcript.segments, transcript.warnings) == ("", 0.0, (), ())


def test_engine_keys_are_hashable_values_for_the_model_cache() -> None:
    cpu = EngineKey("faster-whisper", "base", "cpu", "int8")
    cached = {cpu: "loaded"}
    assert cached[EngineKey("faster-whisper", "base", "cpu", "int8")] == "loaded"
    assert EngineKey("faster-whisper", "base", "cuda", "int8") not in cached
