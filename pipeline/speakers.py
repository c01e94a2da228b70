"""Put speakers on a transcript: words, segments, a summary, and RTTM.

Light on purpose (no torch, no models): the web process renders formats with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from pipeline.transcript import Segment, Speaker, Transcript, Turn, Word


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _gap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, b0 - a1, a0 - b1)


def speaker_at(start: float, end: float, turns: Sequence[Turn]) -> str | None:
    """The speaker whose turns cover most of [start, end]; the nearest turn's when none does.

    Ties go to the speaker who starts talking first, so the answer never depends on dict order.
    """
    if not turns:
        return None
    talk: dict[str, float] = {}
    for turn in turns:
        shared = _overlap(start, end, turn.start, turn.end)
        if shared > 0:
            talk[turn.speaker] = talk.get(turn.speaker, 0.0) + shared
    if talk:
        best = max(talk.values())
        return next(t.speaker for t in turns if talk.get(t.speaker, -1.0) == best)
    # Zero-length words and words in the gaps between turns take the closest turn.
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: (_gap(start, end, t.start, t.end), abs((t.start + t.end) / 2 - middle)))
    return nearest.speaker


def label_words(words: Iterable[Word], turns: Sequence[Turn]) -> tuple[Word, ...]:
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    return tuple(replace(w, speaker=speaker_at(w.start, w.end, ordered)) for w in words)


def split_segment(segment: Segment, turns: Sequence[Turn]) -> list[Segment]:
    """The segment labelled with its speaker, cut into pieces wherever the speaker changes.

    Needs word timestamps to cut; a segment without words keeps one speaker, the one who talks
    most during it. Pieces keep the decoder's statistics but not its tokens, which cannot be
    divided between words reliably.
    """
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    if not segment.words:
        return [replace(segment, speaker=speaker_at(segment.start, segment.end, ordered))]
    words = label_words(segment.words, ordered)
    groups: list[list[Word]] = []
    for word in words:
        if groups and groups[-1][-1].speaker == word.speaker:
            groups[-1].append(word)
        else:
            groups.append([word])
    if len(groups) == 1:
        return [replace(segment, words=words, speaker=words[0].speaker)]
    pieces = []
    for i, group in enumerate(groups):
        start = segment.start if i == 0 else group[0].start
        end = segment.end if i == len(groups) - 1 else group[-1].end
        pieces.append(
            replace(
                segment,
                start=start,
                end=max(start, end),
                text="".join(w.word for w in group),
                tokens=(),
                words=tuple(group),
                speaker=group[0].speaker,
            )
        )
    return pieces


def talk_times(turns: Iterable[Turn]) -> tuple[Speaker, ...]:
    """Each speaker's talk time: the length of the union of their turns, in order of id."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for turn in turns:
        if turn.end > turn.start:
            spans.setdefault(turn.speaker, []).append((turn.start, turn.end))
    out = []
    for speaker in sorted(spans):
        total, reach = 0.0, float("-inf")
        for start, end in sorted(spans[speaker]):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        out.append(Speaker(id=speaker, talk_time=round(total, 3)))
    return tuple(out)


def apply_speakers(transcript: Transcript, turns: Sequence[Turn]) -> Transcript:
    """The transcript with speakers on its words and segments, segments split at speaker changes."""
    segments: list[Segment] = []
    for segment in transcript.segments:
        segments.extend(split_segment(segment, turns))
    numbered = tuple(replace(s, id=i) for i, s in enumerate(segments))
    return replace(transcript, segments=numbered, speakers=talk_times(turns))


# -- RTTM -------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"\s+")


def to_rttm(turns: Iterable[Turn], file_id: str = "audio") -> str:
    """NIST RTTM: one ``SPEAKER`` line per turn (file, channel 1, onset, duration, name)."""
    name = _UNSAFE.sub("_", file_id.strip()) or "audio"
    lines = [
        f"SPEAKER {name} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {_UNSAFE.sub('_', t.speaker)} <NA> <NA>"
        for t in sorted(turns, key=lambda t: (t.start, t.end, t.speaker))
        if t.end > t.start
    ]
    return "".join(line + "\n" for line in lines)


def transcript_to_rttm(transcript: Transcript, file_id: str = "audio") -> str:
    """RTTM of a diarized transcript, one line per run of segments with the same speaker.

    The transcript keeps no turns, so its speaker-labelled segments stand in for them.
    """
    turns: list[Turn] = []
    for segment in transcript.segments:
        if segment.speaker is None:
            continue
        if turns and turns[-1].speaker == segment.speaker and segment.start - turns[-1].end < 1e-6:
            turns[-1] = Turn(turns[-1].start, max(turns[-1].end, segment.end), segment.speaker)
        else:
            turns.append(Turn(segment.start, segment.end, segment.speaker))
    return to_rttm(turns, file_id)


def parse_rttm(text: str) -> list[Turn]:
    """Turns from RTTM ``SPEAKER`` lines (other line types are ignored)."""
    turns = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            turns.append(Turn(start=start, end=round(start + duration, 6), speaker=fields[7]))
    return turns
