"""Long recordings in parallel: split at silences into chunks that every transcribe worker can
take at once, then merge the chunks' transcripts in order with continuous timestamps.

Cuts fall in pauses that faster-whisper's VAD (Silero) finds, near multiples of
CHUNK_SECONDS, so no word is cut in two; where a stretch has no pause, the cut falls at the
target itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.media import SAMPLE_RATE, open_npy, read_samples
from pipeline.transcript import Redaction, Segment, Transcript

# The VAD reads a long recording in windows of this many seconds, each seen with a margin of
# its neighbours: memory stays flat, and a pause is found across a window's edge. Silero's
# working memory grows with what it is given at once (about 1 MB a second of audio, measured),
# so windows are short; the margins cost a third more VAD time.
VAD_WINDOW_SECONDS = 30
VAD_MARGIN_SECONDS = 5
_VAD_FRAME = 512  # samples per Silero decision
SEARCH_SECONDS = 15  # a cut is placed in the pause nearest its target within this many seconds


def plan_chunks(audio: np.ndarray | Path, chunk_seconds: float) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering all of ``audio``, cut in pauses near each target.

    ``audio`` is the samples, or the path of the ``.npy`` file that ``media.decode_to_file``
    wrote: then it is read window by window and memory does not grow with its length.
    """
    if isinstance(audio, Path):
        stored = open_npy(audio)
        total = stored.length

        def read(start: int, end: int) -> np.ndarray:
            return read_samples(stored, start, end)
    else:
        samples = audio
        total = len(samples)

        def read(start: int, end: int) -> np.ndarray:
            return np.asarray(samples[start:end], dtype=np.float32)

    step = int(chunk_seconds * SAMPLE_RATE)
    if total <= step * 1.5:
        return [(0, total)]
    # Only the stretch around each target is searched: the VAD is most of the planning's time
    # (1.1 s of a 5-minute recording's 1.2 s), and a cut never moves further than this anyway.
    search = min(step // 2, int(SEARCH_SECONDS * SAMPLE_RATE))
    cuts: list[int] = []
    target = step
    while target < total - step // 2:
        low, high = max(cuts[-1] + 1 if cuts else 0, target - search), min(total, target + search)
        pauses = _pauses(read, low, high)
        cut = min(pauses, key=lambda p: abs(p - target)) if pauses else target
        cuts.append(int(cut))
        target = cut + step
    bounds = [0, *cuts, total]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _pauses(read: Callable[[int, int], np.ndarray], low: int, high: int) -> list[int]:
    """Midpoints of the pauses in samples ``low`` to ``high``: between two stretches of speech, and
    the silence before the first and after the last (all of it silent: its middle)."""
    speech = speech_spans(lambda a, b: read(low + a, low + b), high - low)
    if not speech:
        return [(low + high) // 2]
    edges = [(0, 0), *speech, (high - low, high - low)]
    return [low + (a[1] + b[0]) // 2 for a, b in itertools.pairwise(edges) if b[0] > a[1]]


def speech_spans(read: Callable[[int, int], np.ndarray], total: int, *,
                 window_seconds: float = VAD_WINDOW_SECONDS,
                 margin_seconds: float = VAD_MARGIN_SECONDS) -> list[tuple[int, int]]:
    """Sorted, disjoint (start, end) sample ranges of speech in ``total`` samples, which
    ``read(start, end)`` hands over a window at a time.

    Each window is run through the VAD with a margin of audio either side, and the speech of
    every window is joined: a stretch counts as a pause only where every window that saw it
    heard silence, so the VAD starting afresh at a window's edge invents no pause there.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    # Short pauses count here (the default merges speech across 2 s of silence): a cut needs
    # only a breath between words, not a long silence.
    options = VadOptions(min_silence_duration_ms=250, speech_pad_ms=50)
    # Whole VAD frames, so that every window sees the frames the whole recording would.
    window = max(1, round(window_seconds * SAMPLE_RATE / _VAD_FRAME)) * _VAD_FRAME
    margin = round(margin_seconds * SAMPLE_RATE / _VAD_FRAME) * _VAD_FRAME
    found: list[tuple[int, int]] = []
    for core_start in range(0, total, window):
        core_end = min(core_start + window, total)
        start, end = max(0, core_start - margin), min(total, core_end + margin)
        for span in get_speech_timestamps(read(start, end), options, sampling_rate=SAMPLE_RATE):
            a, b = start + int(span["start"]), start + int(span["end"])
            if a < core_end and b > core_start:
                found.append((a, b))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(found):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def shift(transcript: Transcript, offset_seconds: float, first_id: int) -> list[Segment]:
    """The chunk's segments on the whole recording's clock, numbered on from ``first_id``."""
    shifted = []
    for n, segment in enumerate(transcript.segments):
        words = None
        if segment.words is not None:
            words = tuple(replace(w, start=round(w.start + offset_seconds, 3), end=round(w.end + offset_seconds, 3))
                          for w in segment.words)
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
        # Each chunk says the same thing about the same options: said once.
        warnings=tuple(dict.fromkeys(w for _, t in ordered for w in t.warnings)),
        redactions=tuple(Redaction(round(r.start + start / SAMPLE_RATE, 3), round(r.end + start / SAMPLE_RATE, 3),
                                   r.policy) for start, t in ordered for r in t.redactions),
    )


def merge_channels(parts: list[tuple[int, int, Transcript]], duration: float) -> Transcript:
    """Join the chunks of a multichannel job, given as (channel, start sample, transcript): each
    channel's chunks are merged as a recording of its own, their segments and words labelled
    with the channel, and all segments put in time order."""
    channels = sorted({channel for channel, _, _ in parts})
    merged = {c: merge([(start, t) for channel, start, t in parts if channel == c], duration) for c in channels}
    labelled = [
        replace(s, channel=c, words=None if s.words is None else tuple(replace(w, channel=c) for w in s.words))
        for c in channels for s in merged[c].segments
    ]
    labelled.sort(key=lambda s: (s.start, s.channel or 0))
    segments = tuple(replace(s, id=n) for n, s in enumerate(labelled))
    spoken: dict[str, float] = {}
    for c in channels:  # the language of the most speech, over every channel
        talk = sum(s.end - s.start for s in merged[c].segments)
        spoken[merged[c].language] = spoken.get(merged[c].language, 0.0) + talk
    language = max(spoken, key=lambda code: spoken[code])
    first = merged[channels[0]]
    return replace(
        first,
        text=" ".join(s.text.strip() for s in segments if s.text.strip()),
        language=language,
        language_probability=next((m.language_probability for m in merged.values() if m.language == language), None),
        segments=segments,
        channels=tuple(channels),
        warnings=tuple(dict.fromkeys(w for m in merged.values() for w in m.warnings)),
        redactions=tuple(sorted((r for m in merged.values() for r in m.redactions), key=lambda r: (r.start, r.end))),
    )
