"""pipeline/worker/engines/batched.py: which decoder runs, and that both transcribe through the engine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.errors import InvalidOption, SettingsError
from pipeline.media import decode_audio
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.worker.engines import ModelCache, batched
from tests.support.helpers import JFK_TEXT, SHARED_AUDIO, wer


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


@pytest.fixture(scope="module")
def models(settings: Settings) -> ModelCache:
    return ModelCache(replace(settings, device="cpu", cpu_threads=2, batch_size=0))


@pytest.mark.skipif(not (SHARED_AUDIO / "multilingual.mp3").is_file(), reason="../shared/audio is absent")
def test_both_decoders_transcribe_and_agree(models: ModelCache) -> None:
    english = decode_audio(SHARED_AUDIO / "multilingual.mp3")[: 16000 * 29]
    jfk = decode_audio(SHARED_AUDIO / "jfk.flac")
    import numpy as np

    audio = np.concatenate([jfk, np.zeros(8000, np.float32), english]).astype(np.float32)
    sequential_opts = TranscribeOptions(batch_size=1)
    engine = models.get(models.key_for(sequential_opts, "cpu"))
    seen: list[float] = []
    sequential = engine.transcribe(audio, sequential_opts, lambda s: seen.append(s.end))
    batched_run = engine.transcribe(audio, replace(sequential_opts, batch_size=4), lambda s: seen.append(s.end))
    assert wer(JFK_TEXT, " ".join(sequential.text.split()[:22])) < 0.1
    assert wer(sequential.text, batched_run.text) < 0.1
    assert batched_run.segments and batched_run.segments[-1].end <= len(audio) / 16000 + 0.5
    assert len(seen) == len(sequential.segments) + len(batched_run.segments)


@pytest.mark.skipif(not (SHARED_AUDIO / "jfk.flac").is_file(), reason="../shared/audio is absent")
def test_which_decoder_ran(models: ModelCache) -> None:
    """The batched decoder always places its pieces with VAD; the sequential one only when asked."""
    audio = decode_audio(SHARED_AUDIO / "jfk.flac")
    engine = models.get(models.key_for(TranscribeOptions(), "cpu"))
    model = engine.model  # type: ignore[attr-defined]
    _, info = batched.transcribe(model, audio, TranscribeOptions(), 1)
    assert info.vad_options is None
    segments, info = batched.transcribe(model, audio, TranscribeOptions(), 8)
    assert info.vad_options is not None
    assert wer(JFK_TEXT, " ".join(s.text for s in segments)) < 0.1


@pytest.mark.skipif(not (SHARED_AUDIO / "multilingual.mp3").is_file(), reason="../shared/audio is absent")
def test_batched_keeps_the_words_at_the_end_of_a_full_window(models: ModelCache) -> None:
    """29 s of continuous speech fills one batched piece; tiny.en ends such a piece early, and the
    last sentence ("... shall be included in all copies or substantial portions of the software")
    was lost until the gaps in the batched output were decoded again."""
    english = decode_audio(SHARED_AUDIO / "multilingual.mp3")[: int(16000 * 29.5)]
    engine = models.get(models.key_for(TranscribeOptions(), "cpu"))
    transcript = engine.transcribe(english, TranscribeOptions(batch_size=4), lambda s: None)
    assert "substantial portions of the software" in transcript.text.lower().replace(",", "")
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1].end <= 29.5 + 0.5


@pytest.mark.skipif(not (SHARED_AUDIO / "jfk.flac").is_file(), reason="../shared/audio is absent")
def test_a_real_pause_adds_nothing(models: ModelCache) -> None:
    """Silence between two recordings is a gap too: decoded behind VAD, it gives no words, and the
    words after it keep their place on the timeline."""
    import numpy as np

    jfk = decode_audio(SHARED_AUDIO / "jfk.flac")
    audio = np.concatenate([jfk, np.zeros(16000 * 4, np.float32), jfk]).astype(np.float32)
    engine = models.get(models.key_for(TranscribeOptions(), "cpu"))
    transcript = engine.transcribe(audio, TranscribeOptions(batch_size=4), lambda s: None)
    assert not [s for s in transcript.segments if 11.5 < s.start < 14.5 and s.end < 15.0]
    assert wer(f"{JFK_TEXT} {JFK_TEXT}", transcript.text) < 0.1
    assert any(s.start >= 14.0 for s in transcript.segments)


def test_the_last_chunk_of_a_repeated_sentence_does_not_loop(models: ModelCache, tmp_path: Path) -> None:
    """The service test's long recording (the fixture said 25 times), cut as the service cuts it
    at 60 s: the last piece ends in a second of near silence after the last word. Decoded as a
    gap, that second came back as "Thank you very much for your time, and thank you..." over and
    over (WER 2.0 on the piece, 0.5 on the job); Whisper marks such a decode as failed."""
    from pipeline.worker.chunks import plan_chunks
    from tests.support.helpers import SPEECH_EN_TEXT, long_speech

    audio = decode_audio(long_speech(tmp_path / "long.wav", 25))
    start, end = plan_chunks(audio, 60)[-1]
    repeats = round((end - start) / len(audio) * 25)
    engine = models.get(models.key_for(TranscribeOptions(), "cpu"))
    transcript = engine.transcribe(audio[start:end], TranscribeOptions(batch_size=4), lambda s: None)
    assert wer(" ".join([SPEECH_EN_TEXT] * repeats), transcript.text) < 0.15
    assert "thank" not in transcript.text.lower()


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
