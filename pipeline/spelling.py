"""custom_spelling: replace words the engine writes one way with the spelling a user wants.

Rules are ``[{"from": ["Sequel", "see qual"], "to": "SQL"}, ...]``. A ``from`` matches whole
words, ignoring case and the punctuation around each word, and may be several words
("see qual"): then the words it spans become one, timed from the first's start to the last's
end. The punctuation around the match stays (``"sequel,"`` becomes ``"SQL,"``). The rules apply
to the words, each segment's text and the whole text, after decoding and before anything is
stored; the longest ``from`` wins where two could match at one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.errors import InvalidOption
from pipeline.transcript import Segment, Transcript, Word

FIELD = "custom_spelling"
MAX_RULES = 100
MAX_FROM = 20  # spellings per rule
MAX_CHARS = 100  # per spelling, and per "to"

_EDGE = re.compile(r"^\W+|\W+$")
_LEAD = re.compile(r"^(\s*\W*)")
_TRAIL = re.compile(r"(\W*)$")


def _norm(word: str) -> str:
    return _EDGE.sub("", word.strip()).lower()


@dataclass(frozen=True)
class Rule:
    sources: tuple[tuple[str, ...], ...]  # each "from", as its normalised words
    to: str


def parse(raw: Any) -> str | None:
    """Check a ``custom_spelling`` value (a JSON string or an already decoded list) and return
    its canonical JSON (what options keep, so the cache key covers it), or None for none."""
    value = raw
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            raise InvalidOption("custom_spelling must be a JSON list of {\"from\": [...], \"to\": "
                                "\"...\"} objects; it is not JSON", field=FIELD) from None
    if not isinstance(value, list):
        raise InvalidOption("custom_spelling must be a JSON list of {\"from\": [...], \"to\": \"...\"} "
                            f"objects, not {type(value).__name__}", field=FIELD)
    if len(value) > MAX_RULES:
        raise InvalidOption(f"custom_spelling may hold at most {MAX_RULES} rules, not {len(value)}", field=FIELD)
    rules: list[list[Any]] = []
    for n, item in enumerate(value):
        where = f"custom_spelling[{n}]"
        if not isinstance(item, dict) or set(item) != {"from", "to"}:
            raise InvalidOption(f"{where} must be an object with exactly the keys \"from\" and \"to\"",
                                field=FIELD)
        sources, to = item["from"], item["to"]
        if (not isinstance(sources, list) or not sources or len(sources) > MAX_FROM
                or not all(isinstance(s, str) for s in sources)):
            raise InvalidOption(f"{where}.from must be a list of 1 to {MAX_FROM} strings", field=FIELD)
        if not isinstance(to, str) or len(to) > MAX_CHARS or "\n" in to:
            raise InvalidOption(f"{where}.to must be a string of at most {MAX_CHARS} characters on one line",
                                field=FIELD)
        cleaned = []
        for source in sources:
            words = [_norm(w) for w in source.split()]
            if not words or not all(words) or len(source) > MAX_CHARS:
                raise InvalidOption(f"{where}.from holds {source[:50]!r}: each must be words (at most "
                                    f"{MAX_CHARS} characters), not only spaces or punctuation", field=FIELD)
            cleaned.append(" ".join(source.split()))
        rules.append([cleaned, to.strip()])
    return json.dumps(rules, ensure_ascii=False) if rules else None


def rules_from(canonical: str | None) -> list[Rule]:
    if not canonical:
        return []
    return [Rule(sources=tuple(tuple(_norm(w) for w in s.split()) for s in sources), to=to)
            for sources, to in json.loads(canonical)]


def _patterns(rules: Sequence[Rule]) -> list[tuple[re.Pattern[str], str]]:
    # Longest first, so "new york city" wins over "new york" where both match.
    found = [(source, rule.to) for rule in rules for source in rule.sources]
    found.sort(key=lambda item: -len(item[0]))
    return [(re.compile(r"(?<!\w)" + r"\W+".join(re.escape(w) for w in source) + r"(?!\w)", re.IGNORECASE), to)
            for source, to in found]


def apply_text(text: str, rules: Sequence[Rule]) -> str:
    if not rules:
        return text
    patterns = _patterns(rules)
    # One pass over the text: at each place the longest matching spelling; replaced text is
    # never matched again.
    out: list[str] = []
    at = 0
    while at <= len(text):
        best: tuple[int, int, str] | None = None
        for pattern, to in patterns:
            m = pattern.search(text, at)
            if m and (best is None or m.start() < best[0] or (m.start() == best[0] and m.end() > best[1])):
                best = (m.start(), m.end(), to)
        if best is None or best[1] == best[0]:
            break
        out.append(text[at:best[0]])
        out.append(best[2])
        at = best[1]
    out.append(text[at:])
    return "".join(out)


def apply_words(words: Sequence[Word], rules: Sequence[Rule]) -> tuple[Word, ...]:
    if not rules:
        return tuple(words)
    sources = sorted(((s, r.to) for r in rules for s in r.sources), key=lambda item: -len(item[0]))
    keys = [_norm(w.word) for w in words]
    out: list[Word] = []
    i = 0
    while i < len(words):
        for source, to in sources:
            n = len(source)
            if tuple(keys[i:i + n]) == source:
                first, last = words[i], words[i + n - 1]
                lead = _LEAD.match(first.word)
                trail = _TRAIL.search(last.word.rstrip())
                word = (lead.group(1) if lead else "") + to + (trail.group(1) if trail else "")
                out.append(replace(first, word=word, end=last.end,
                                   probability=min(w.probability for w in words[i:i + n])))
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return tuple(out)


def apply_segment(segment: Segment, rules: Sequence[Rule]) -> Segment:
    if not rules:
        return segment
    words = None if segment.words is None else apply_words(segment.words, rules)
    return replace(segment, text=apply_text(segment.text, rules), words=words)


def apply(transcript: Transcript, rules: Sequence[Rule]) -> Transcript:
    if not rules:
        return transcript
    return replace(transcript, text=apply_text(transcript.text, rules),
                   segments=tuple(apply_segment(s, rules) for s in transcript.segments))
