"""pipeline/worker/engines/batched.py: which decoder runs, and that both transcribe through the engine."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidOption, SettingsError
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.worker.engines import batched


@pytest.mark.parametrize(("requested", "setting", "device", "expected"), [
    (None, 0, "cuda", batched.AUTO_CUDA_BATCH),
    (None, 0, "cpu", batched.AUTO_CPU_BATCH),
    (None, 8, "cpu", 8),
    (None, 1, "cuda", 1),
    (4, 0, "cpu", 4),
    (1, 32, "cuda", 1),
])
def test_batch_size_request_then_setting_then_device(requested: int | None, setting: int, device: str,
                                                     expected: int) -> None:
    assert batched.batch_size_for(requested, setting, device) == expected
    assert batched.batch_size_for(requested, setting, device, 120.0) == expected


@pytest.mark.parametrize(("requested", "setting", "device", "seconds", "expected"), [
    (None, 0, "cpu", 30.0, 1), (None, 0, "cuda", 11.0, 1), (None, 0, "cuda", 30.5, batched.AUTO_CUDA_BATCH),
    (8, 0, "cpu", 11.0, 8), (None, 16, "cuda", 11.0, 16),
])
def test_auto_leaves_one_window_to_the_sequential_decoder(requested: int | None, setting: int, device: str,
                                                          seconds: float, expected: int) -> None:
    assert batched.batch_size_for(requested, setting, device, seconds) == expected


@pytest.mark.parametrize(("raw", "expected"), [("8", 8), ("1", 1), (16, 16), ("auto", None), ("", None),
                                               ("64", 64)])
def test_batch_size_option_parses(raw: object, expected: int | None) -> None:
    assert TranscribeOptions.parse({"batch_size": raw}, Settings()).batch_size == expected


@pytest.mark.parametrize("raw", ["0", "65", "2.5", "many", True, "-1"])
def test_bad_batch_size_option_names_the_field(raw: object) -> None:
    with pytest.raises(InvalidOption) as caught:
        TranscribeOptions.parse({"batch_size": raw}, Settings())
    assert caught.value.field == "batch_size"


def test_batch_size_setting() -> None:
    assert Settings().batch_size == 0
    assert Settings.from_env({"BATCH_SIZE": "auto"}).batch_size == 0
    assert Settings.from_env({"BATCH_SIZE": "16"}).batch_size == 16
    with pytest.raises(SettingsError, match="BATCH_SIZE"):
        Settings.from_env({"BATCH_SIZE": "sixteen"})


def test_batch_size_is_part_of_the_cache_fingerprint() -> None:
    assert TranscribeOptions(batch_size=8).fingerprint() != TranscribeOptions().fingerprint()
    assert TranscribeOptions.from_json(TranscribeOptions(batch_size=8).to_json()).batch_size == 8


def test_a_gap_keeps_only_what_whisper_does_not_mark_as_failed() -> None:
    from faster_whisper.transcribe import Segment as RawSegment

    def raw(text: str, compression_ratio: float, no_speech_prob: float, avg_logprob: float = -0.4) -> RawSegment:
        return RawSegment(id=0, seek=0, start=0.1, end=0.9, text=text, tokens=[1], avg_logprob=avg_logprob,
                          compression_ratio=compression_ratio, no_speech_prob=no_speech_prob, words=None,
                          temperature=0.0)

    class Model:
        def transcribe(self, piece: object, **kwargs: object) -> tuple[list[RawSegment], None]:
            return [raw(" noon.", 1.0, 0.1), raw(" thank you, and thank you, and thank you", 16.7, 0.1),
                    raw(" Thank you.", 1.2, 0.74, avg_logprob=-1.3),
                    raw(" Yes.", 1.0, 0.7)], None  # no speech, Whisper thinks, but sure of the word

    import numpy as np

    kept = list(batched._decode_gap(Model(), np.zeros(16000 * 3, np.float32), 1.0, 2.0, {}))  # type: ignore[arg-type]
    assert [(s.text, s.start, s.end) for s in kept] == [(" noon.", 1.1, 1.9), (" Yes.", 1.1, 1.9)]
