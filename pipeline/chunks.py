"""Long recordings in parallel: split at silences into chunks that every transcribe worker can
take at once, then merge the chunks' transcripts in order with continuous timestamps.

Cuts fall in pauses that faster-whisper's VAD (Silero) finds, near multiples of
CHUNK_SECONDS, so no word is cut in two; where a stretch has no pause, the cut falls at the
target itself.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from pipeline.media import SAMPLE_RATE
from pipeline.transcript import Segment, Transcript, Word


def plan_chunks(audio: np.ndarray, chunk_seconds: float) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering all of ``audio``, cut in pauses near each target."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    total = len(audio)
    step = int(chunk_seconds * SAMPLE_RATE)
    if total <= step * 1.5:
        return [(0, total)]
    # Short pauses count here (the default merges speech across 2 s of silence): a cut needs
    # only a breath between words, not a long silence.
    options = VadOptions(min_silence_duration_ms=250, speech_pad_ms=50)
    speech = get_speech_timestamps(np.asarray(audio, dtype=np.float32), options, sampling_rate=SAMPLE_RATE)
    # Midpoints of the pauses between speech, and the silence before and after it.
    pauses = [(a["end"] + b["start"]) // 2 for a, b in itertools.pairwise(speech)]
    cuts: list[int] = []
    target = step
    while target < total - step // 2:
        window = [p for p in pauses if abs(p - target) <= step // 2 and (not cuts or p > cuts[-1])]
        cut = min(window, key=lambda p: abs(p - target)) if window else target
        cuts.append(int(cut))
        target = cut + step
    bounds = [0, *cuts, total]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def shift(transcript: Transcript, offset_seconds: float, first_id: int) -> list[Segment]:
    """The chunk's segments on the whole recording's clock, numbered on from ``first_id``."""
    shifted = []
    for n, segment in enumerate(transcript.segments):
        words = None
        if segment.words is not None:
            words = tuple(Word(start=round(w.start + offset_seconds, 3), end=round(w.end + offset_seconds, 3),
                               word=w.word, probability=w.probability) for w in segment.words)
        shifted.append(replace(segment, id=first_id + n, start=round(segment.start + offset_seconds, 3),
                               end=round(segment.end + offset_seconds, 3), words=words))
    return shifted


def merge(parts: list[tuple[int, Transcript]], duration: float) -> Transcript:
    """Join chunk transcripts, given with their start sample, in order of that start."""
    ordered = sorted(parts, key=lambda part: part[0])
    segments: list[Segment] = []
    for start, transcript in ordered:
        segments += shift(transcript, start / SAMPLE_RATE, len(segments))
    first = ordered[0][1]
    # The language of the most speech: chunks of a mostly-English recording may disagree.
    spoken: dict[str, float] = {}
    for _, transcript in ordered:
        spoken[transcript.language] = spoken.get(transcript.language, 0.0) + transcript.duration
    language = max(spoken, key=lambda code: spoken[code])
    return Transcript(
        text=" ".join(t.text.strip() for _, t in ordered if t.text.strip()),
        language=language,
        language_probability=first.language_probability if first.language == language else None,
        duration=round(duration, 3),
        segments=tuple(segments),
        task=first.task,
        engine=first.engine,
        model=first.model,
        device=first.device,
    )
