"""Words with times for every segment, whether or not the job asked for word timestamps.

The views over a finished transcript (sentences, paragraphs, search, re-flowed captions) work on
words. A job that asked for ``word_timestamps`` has the engine's own; for one that did not, a
segment's time is spread over its words in proportion to their length in characters (a space
counts as one): no new inference, and close enough for finding a word or timing a caption,
though a word after a pause inside the segment comes out early.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.transcript import Segment, Transcript, Word

_WORD = re.compile(r"\s*\S+")


@dataclass(frozen=True)
class TimedWord:
    text: str  # as written, with its leading space (" Americans,")
    start: float
    end: float
    speaker: str | None
    channel: int | None
    segment: int  # the segment's id
    estimated: bool  # True where the time was spread by length rather than decoded


def estimate_words(segment: Segment) -> tuple[Word, ...]:
    """The segment's words, its time spread over them by length in characters."""
    pieces = _WORD.findall(segment.text)
    total = sum(len(p) for p in pieces)
    span = max(0.0, segment.end - segment.start)
    words: list[Word] = []
    at = 0
    for piece in pieces:
        start = segment.start + span * at / total
        at += len(piece)
        end = segment.start + span * at / total
        words.append(Word(start=round(start, 3), end=round(end, 3), word=piece, probability=0.0,
                          speaker=segment.speaker, channel=segment.channel))
    return tuple(words)


def segment_words(segment: Segment) -> tuple[tuple[Word, ...], bool]:
    """(words, estimated): the decoded words where there are any, else estimated ones."""
    if segment.words:
        return segment.words, False
    return estimate_words(segment), True


def timed_words(transcript: Transcript) -> Iterator[TimedWord]:
    """Every word of the transcript in segment order, with its time, speaker and channel."""
    for segment in transcript.segments:
        words, estimated = segment_words(segment)
        for word in words:
            if not word.word.strip():
                continue
            yield TimedWord(text=word.word, start=word.start, end=word.end,
                            speaker=word.speaker if word.speaker is not None else segment.speaker,
                            channel=word.channel if word.channel is not None else segment.channel,
                            segment=segment.id, estimated=estimated)


def has_word_timestamps(transcript: Transcript) -> bool:
    return any(s.words for s in transcript.segments)
