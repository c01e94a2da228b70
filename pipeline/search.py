"""Find words and phrases in a finished transcript, with when each was said.

Matching ignores case and punctuation (``"Americans,"`` is ``americans``; ``don't`` is
``dont``); a term of several words matches them in a row, within one channel. Times come from
the words (pipeline.timing: decoded, or spread over the segment where the job had none).
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.errors import InvalidOption
from pipeline.timing import TimedWord, timed_words
from pipeline.transcript import Transcript

MAX_TERMS = 50
MAX_TERM_CHARS = 100
_NOT_WORD = re.compile(r"[\W_]+")


def normalise(word: str) -> str:
    return _NOT_WORD.sub("", word).lower()


def parse_terms(raw: str) -> list[str]:
    """The ``words`` query: comma-separated terms, each kept once, in order."""
    terms = list(dict.fromkeys(" ".join(t.split()) for t in raw.split(",") if t.strip()))
    if not terms:
        raise InvalidOption("words must name at least one word or phrase, comma-separated", field="words")
    if len(terms) > MAX_TERMS or any(len(t) > MAX_TERM_CHARS for t in terms):
        raise InvalidOption(f"words takes at most {MAX_TERMS} terms of up to {MAX_TERM_CHARS} characters",
                            field="words")
    if any(not [normalise(w) for w in t.split() if normalise(w)] for t in terms):
        raise InvalidOption("words: each term needs a letter or a digit, not only punctuation", field="words")
    return terms


def search(transcript: Transcript, terms: list[str]) -> list[dict[str, Any]]:
    streams: dict[int | None, list[TimedWord]] = {}
    for word in timed_words(transcript):
        if normalise(word.text):
            streams.setdefault(word.channel, []).append(word)
    keyed = {channel: [normalise(w.text) for w in words] for channel, words in streams.items()}
    matches = []
    for term in terms:
        wanted = [k for k in (normalise(w) for w in term.split()) if k]
        n = len(wanted)
        found: list[list[float]] = []
        for channel, words in streams.items():
            keys = keyed[channel]
            found += [[words[i].start, words[i + n - 1].end] for i in range(len(keys) - n + 1)
                      if keys[i:i + n] == wanted]
        found.sort()
        matches.append({"text": term, "count": len(found), "timestamps": found})
    return matches
