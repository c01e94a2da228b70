"""Speakers known by name: short reference clips matched against the speakers found.

Each clip becomes one CAM++ embedding (the mean of windows over its speech, as the segmentation
model hears it), and each speaker found becomes one from the audio of their turns where nobody
else speaks. A speaker takes a name when the two are closer than ``threshold`` (cosine
similarity), one name per speaker and one speaker per name (Hungarian assignment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.errors import InvalidOption
from pipeline.transcript import Turn
from pipeline.worker.diarization.engine import DiarizationOptions, _speech_mask, _windows
from pipeline.worker.diarization.models import SAMPLE_RATE, get_models
from pipeline.worker.diarization.turns import runs

# Measured on the AMI excerpts (docs/benchmarks.md): a 2-6 s clip cut from one part of a
# meeting, against the speaker found over the rest of it, scored 0.69-0.89 for the same person
# (9 clips); a voice from another meeting or jfk.flac scored at most 0.60 against any speaker
# found (184 pairs).
MATCH_THRESHOLD = 0.65
# Under this much speech a clip says too little about a voice to be matched with.
MIN_REFERENCE_SPEECH = 1.0
# A speaker's embedding is taken from at most this much of their solo speech.
MAX_SPEAKER_AUDIO = 60.0


@dataclass(frozen=True)
class Reference:
    name: str
    embedding: np.ndarray


def _spans_embedding(samples: np.ndarray, spans: Sequence[tuple[float, float]], device: str) -> np.ndarray | None:
    opts = DiarizationOptions()
    windows = _windows(list(spans), samples.size / SAMPLE_RATE, opts)
    if len(windows) == 0:
        return None
    vectors = get_models(device).embed(samples, windows)
    mean = vectors.mean(axis=0)
    return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12), dtype=np.float32)


def reference_embedding(samples: np.ndarray, *, field: str, device: str = "cpu") -> np.ndarray:
    """The embedding of a reference clip (16 kHz mono), or InvalidOption naming ``field`` when the
    clip holds less than MIN_REFERENCE_SPEECH of speech."""
    audio = np.asarray(samples, dtype=np.float32)
    peak = float(np.abs(audio).max(initial=0.0))
    speech: list[tuple[float, float]] = []
    if audio.size >= SAMPLE_RATE * MIN_REFERENCE_SPEECH and peak >= 1e-4:
        audio = audio * np.float32(0.9 / peak)
        opts = DiarizationOptions()
        activity = get_models(device).activity(audio, step=opts.segmentation_step)
        times = np.asarray(activity.time(np.arange(activity.speech.size)), dtype=np.float64)
        mask = _speech_mask(activity, np.ones(times.size, dtype=bool), opts)
        speech = [(float(times[a]), float(min(audio.size / SAMPLE_RATE, times[b - 1] + activity.frame_step)))
                  for a, b in runs(mask)]
    heard = sum(b - a for a, b in speech)
    embedding = _spans_embedding(audio, speech, device) if heard >= MIN_REFERENCE_SPEECH else None
    if embedding is None:
        raise InvalidOption(f"{field} holds {heard:.1f} s of speech; a reference needs at least "
                            f"{MIN_REFERENCE_SPEECH:g} s of the speaker talking.", field=field)
    return embedding


def solo_spans(turns: Sequence[Turn], speaker: str) -> list[tuple[float, float]]:
    """Where ``speaker`` talks and nobody else does."""
    others = [(t.start, t.end) for t in turns if t.speaker != speaker]
    out: list[tuple[float, float]] = []
    for t in turns:
        if t.speaker != speaker:
            continue
        pieces = [(t.start, t.end)]
        for a, b in others:
            pieces = [p for s, e in pieces for p in ((s, min(e, a)), (max(s, b), e)) if p[1] - p[0] > 1e-3]
        out.extend(pieces)
    return sorted(out)


def name_speakers(
    audio: np.ndarray, turns: Sequence[Turn], references: Sequence[Reference], *,
    threshold: float = MATCH_THRESHOLD, device: str = "cpu",
) -> list[Turn]:
    """``turns`` with each speaker that matches a reference renamed after it."""
    speakers = sorted({t.speaker for t in turns})
    if not references or not speakers:
        return list(turns)
    samples = np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(samples).max(initial=0.0))
    if peak >= 1e-4:
        samples = samples * np.float32(0.9 / peak)
    found: list[tuple[str, np.ndarray]] = []
    for speaker in speakers:
        spans = solo_spans(turns, speaker) or [(t.start, t.end) for t in turns if t.speaker == speaker]
        kept, total = [], 0.0
        for a, b in sorted(spans, key=lambda s: s[0] - s[1]):  # longest first
            if total >= MAX_SPEAKER_AUDIO:
                break
            kept.append((a, b))
            total += b - a
        embedding = _spans_embedding(samples, sorted(kept), device)
        if embedding is not None:
            found.append((speaker, embedding))
    if not found:
        return list(turns)
    similarity = np.array([[float(r.embedding @ e) for _, e in found] for r in references])
    rows, cols = linear_sum_assignment(-similarity)
    names = {found[c][0]: references[r].name for r, c in zip(rows, cols, strict=True)
             if similarity[r, c] >= threshold}
    return [replace(t, speaker=names.get(t.speaker, t.speaker)) for t in turns]


def similarities(audio: np.ndarray, turns: Sequence[Turn], references: Sequence[Reference],
                 device: str = "cpu") -> dict[str, list[float]]:
    """Each speaker's similarity to each reference (for measuring the threshold)."""
    out: dict[str, list[float]] = {}
    samples = np.asarray(audio, dtype=np.float32)
    samples = samples * np.float32(0.9 / max(float(np.abs(samples).max(initial=0.0)), 1e-4))
    for speaker in sorted({t.speaker for t in turns}):
        spans = solo_spans(turns, speaker) or [(t.start, t.end) for t in turns if t.speaker == speaker]
        e = _spans_embedding(samples, spans[:200], device)
        out[speaker] = [float(r.embedding @ e) if e is not None else float("nan") for r in references]
    return out


def check_pairs(names: Sequence[str], count: int) -> None:
    if len(names) != count:
        raise InvalidOption(f"known_speaker_names[] and known_speaker_references[] must pair up: "
                            f"{len(names)} names, {count} references.", field="known_speaker_references")
