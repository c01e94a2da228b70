"""Subtitle cues re-flowed from the words: at most ``chars_per_caption`` characters a line and
``max_lines`` lines a cue (``format=srt|vtt&chars_per_caption=32&max_lines=2``).

Lines break between words (a word longer than a line gets a line of its own); a new cue
starts when the current one is full, where the speaker or channel changes, and at a pause of
``CUE_PAUSE_SECONDS`` or more. Each cue runs from its first word's start to its last word's
end. Words are the decoded ones, or the segment's time spread over its words
(pipeline.timing).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import InvalidOption
from pipeline.timing import TimedWord, timed_words
from pipeline.transcript import Transcript

CUE_PAUSE_SECONDS = 1.5
MIN_CHARS, MAX_CHARS = 10, 200
MAX_LINES = 5
DEFAULT_CHARS = 42  # the common broadcast limit, when only max_lines is given


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None
    channel: int | None


def check(chars_per_caption: int | None, max_lines: int | None, fmt: str) -> tuple[int, int] | None:
    """(chars, lines) to re-flow with, or None to keep one cue per segment."""
    if chars_per_caption is None and max_lines is None:
        return None
    name = "chars_per_caption" if chars_per_caption is not None else "max_lines"
    if fmt not in ("srt", "vtt"):
        raise InvalidOption(f"{name} re-flows subtitles: use it with format=srt or format=vtt", field=name)
    chars = DEFAULT_CHARS if chars_per_caption is None else chars_per_caption
    lines = 1 if max_lines is None else max_lines
    if not MIN_CHARS <= chars <= MAX_CHARS:
        raise InvalidOption(f"chars_per_caption must be between {MIN_CHARS} and {MAX_CHARS}",
                            field="chars_per_caption")
    if not 1 <= lines <= MAX_LINES:
        raise InvalidOption(f"max_lines must be between 1 and {MAX_LINES}", field="max_lines")
    return chars, lines


def reflow(transcript: Transcript, chars_per_caption: int, max_lines: int = 1) -> list[Cue]:
    words = sorted(timed_words(transcript), key=lambda w: (w.start, w.channel or 0))
    cues: list[Cue] = []
    lines: list[str] = []
    cue_words: list[TimedWord] = []

    def close() -> None:
        if cue_words:
            cues.append(Cue(cue_words[0].start, cue_words[-1].end, tuple(lines), cue_words[0].speaker,
                            cue_words[0].channel))
        lines.clear()
        cue_words.clear()

    for word in words:
        text = word.text.strip()
        if cue_words:
            last = cue_words[-1]
            other_voice = (word.speaker, word.channel) != (last.speaker, last.channel)
            if other_voice or word.start - last.end >= CUE_PAUSE_SECONDS:
                close()
        if lines and len(lines[-1]) + 1 + len(text) <= chars_per_caption:
            lines[-1] += " " + text
        else:
            if len(lines) >= max_lines:
                close()
            lines.append(text)
        cue_words.append(word)
    close()
    return cues
