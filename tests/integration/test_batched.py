"""pipeline/worker/engines/batched.py: which decoder runs, and that both transcribe through the engine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.media import decode_audio
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.worker.engines import ModelCache, batched
from tests.support.helpers import JFK_TEXT, SHARED_AUDIO, wer


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
