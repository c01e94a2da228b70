"""Sentences and paragraphs of a finished transcript, from its timed words (pipeline.timing).

A sentence ends after a word that ends in ``.``, ``?`` or ``!`` (closing quotes and brackets
after it allowed), and wherever the speaker or the channel changes. Abbreviations such as
"Mr." end one too: the text has no other sign. A paragraph is a run of sentences by one
speaker on one channel that ends at a pause of ``PARAGRAPH_PAUSE_SECONDS`` or more between
two sentences, or once it holds ``PARAGRAPH_MAX_WORDS`` words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.timing import TimedWord, has_word_timestamps, timed_words
from pipeline.transcript import Transcript

PARAGRAPH_PAUSE_SECONDS = 1.5
PARAGRAPH_MAX_WORDS = 120
_END = re.compile(r"[.?!…][\"'”’)\]]*$")


@dataclass(frozen=True)
class Passage:
    """A sentence or a paragraph: its words, with their times."""

    words: tuple[TimedWord, ...]

    @property
    def text(self) -> str:
        return " ".join("".join(w.text for w in self.words).split())

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end

    @property
    def speaker(self) -> str | None:
        return self.words[0].speaker

    @property
    def channel(self) -> int | None:
        return self.words[0].channel

    def to_dict(self, *, with_words: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"text": self.text, "start": self.start, "end": self.end}
        if self.speaker is not None:
            body["speaker"] = self.speaker
        if self.channel is not None:
            body["channel"] = self.channel
        if with_words:
            body["words"] = [{"word": w.text.strip(), "start": w.start, "end": w.end} for w in self.words]
        return body


def _same_voice(a: TimedWord, b: TimedWord) -> bool:
    return a.speaker == b.speaker and a.channel == b.channel


def split_sentences(words: Iterable[TimedWord]) -> list[Passage]:
    sentences: list[Passage] = []
    current: list[TimedWord] = []
    for word in words:
        if current and not _same_voice(current[-1], word):
            sentences.append(Passage(tuple(current)))
            current = []
        current.append(word)
        if _END.search(word.text.strip()):
            sentences.append(Passage(tuple(current)))
            current = []
    if current:
        sentences.append(Passage(tuple(current)))
    return sentences


def group_paragraphs(sentences: Sequence[Passage], *, pause: float = PARAGRAPH_PAUSE_SECONDS,
                     max_words: int = PARAGRAPH_MAX_WORDS) -> list[Passage]:
    paragraphs: list[Passage] = []
    current: list[TimedWord] = []
    for sentence in sentences:
        if current and (not _same_voice(current[-1], sentence.words[0])
                        or sentence.start - current[-1].end >= pause or len(current) >= max_words):
            paragraphs.append(Passage(tuple(current)))
            current = []
        current.extend(sentence.words)
    if current:
        paragraphs.append(Passage(tuple(current)))
    return paragraphs


def _by_channel(transcript: Transcript) -> list[TimedWord]:
    # Channels talk over each other: each channel's sentences are its own, then all in time order.
    words = list(timed_words(transcript))
    if not transcript.channels:
        return words
    return sorted(words, key=lambda w: (w.channel or 0, w.start))


def _in_time_order(passages: list[Passage]) -> list[Passage]:
    return sorted(passages, key=lambda p: (p.start, p.channel or 0))


def sentences(transcript: Transcript) -> list[dict[str, Any]]:
    with_words = has_word_timestamps(transcript)
    found = _in_time_order(split_sentences(_by_channel(transcript)))
    return [s.to_dict(with_words=with_words) for s in found]


def paragraphs(transcript: Transcript) -> list[dict[str, Any]]:
    with_words = has_word_timestamps(transcript)
    found = _in_time_order(group_paragraphs(split_sentences(_by_channel(transcript))))
    return [p.to_dict(with_words=with_words) for p in found]
