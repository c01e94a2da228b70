"""redact_pii: find personal data in a transcript with regular expressions, offline, and replace it.

Policies (AssemblyAI's names where it has one):

- ``email_address``: ``name@example.com``.
- ``phone_number``: 7 to 15 digits written as a phone number (``555-123-4567``, ``(555) 123 4567``,
  ``+44 20 7946 0958``).
- ``credit_card_number``: 13 to 19 digits, grouped or not, that pass the Luhn check.
- ``iban``: two letters, two check digits and up to 30 letters or digits that pass the
  ISO 13616 mod-97 check.
- ``us_social_security_number``: ``123-45-6789`` (or nine digits), without the numbers the SSA
  never issues (area 000, 666 or 900-999, group 00, serial 0000).
- ``ip_address``: IPv4 and IPv6 addresses (checked by ``ipaddress``).
- ``number``: any other run of digits (``42``, ``3.5``, ``1,000``).

Numbers said as words ("five five five") are not found: Whisper writes most numbers as
digits. Where two policies match overlapping text, the one listed first above wins.

The matched text is replaced by ``[POLICY_NAME]`` (``sub=entity_name``, the default) or by as
many ``#`` as it has characters (``sub=hash``), in the whole text, each segment's text and the
words; a segment's token ids are dropped (they would spell the text again). Each redacted
stretch of words is kept as a ``Redaction`` (start, end, policy) so that the audio can be
toned out there (``redact_audio``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.errors import InvalidOption
from pipeline.timing import estimate_words
from pipeline.transcript import Redaction, Segment, Transcript, Word

POLICIES = ("email_address", "credit_card_number", "iban", "us_social_security_number",
            "phone_number", "ip_address", "number")
# What redact_pii=true without redact_pii_policies redacts: all but "number", which takes
# every figure in the transcript (dates, amounts) along.
DEFAULT_POLICIES = tuple(p for p in POLICIES if p != "number")
SUBSTITUTIONS = ("entity_name", "hash")


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    policy: str


def _luhn(digits: str) -> bool:
    total = 0
    for n, ch in enumerate(reversed(digits)):
        d = int(ch)
        if n % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    code = re.sub(r"\s", "", text).upper()
    if not 15 <= len(code) <= 34:
        return False
    moved = code[4:] + code[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _ssn_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ip_ok(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.version == 4 or text.count(":") >= 2


def _phone_ok(text: str) -> bool:
    return 7 <= len(re.sub(r"\D", "", text)) <= 15


_DETECTORS: dict[str, tuple[re.Pattern[str], Callable[[str], bool] | None]] = {
    "email_address": (re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), None),
    "credit_card_number": (re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])", re.ASCII),
                           lambda t: _luhn(re.sub(r"\D", "", t))),
    "iban": (re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?!\w)", re.ASCII), _iban_ok),
    "us_social_security_number": (re.compile(r"(?<![\d-])(?:\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|\d{9})(?![\d-])",
                                             re.ASCII), _ssn_ok),
    "phone_number": (re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}"
                                r"(?![\d])", re.ASCII), _phone_ok),
    "ip_address": (re.compile(r"(?<![\w:.])(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})"
                              r"(?![\w:])", re.ASCII), _ip_ok),
    "number": (re.compile(r"(?<![\w])\d+(?:[.,]\d+)*(?:st|nd|rd|th|%)?", re.ASCII), None),
}


def parse_policies(raw: object) -> tuple[str, ...]:
    """A comma-separated string (or a list) of policy names, checked; empty: the defaults."""
    if isinstance(raw, str):
        names = [p.strip().lower() for p in raw.split(",")]
    elif isinstance(raw, list | tuple) and all(isinstance(p, str) for p in raw):
        names = [p.strip().lower() for item in raw for p in item.split(",")]
    else:
        raise InvalidOption("redact_pii_policies must be a comma-separated list of policy names",
                            field="redact_pii_policies")
    names = [n for n in names if n]
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise InvalidOption(f"redact_pii_policies: unknown policy {unknown[0][:50]!r}; the policies are "
                            f"{', '.join(POLICIES)}", field="redact_pii_policies")
    # Kept in the order of POLICIES: the same set is the same options, and the same cache key.
    return tuple(p for p in POLICIES if p in names)


def find(text: str, policies: Sequence[str]) -> list[Match]:
    """Non-overlapping matches in ``text``, in order; a policy listed earlier wins an overlap."""
    chosen: list[Match] = []
    for policy in POLICIES:
        if policy not in policies:
            continue
        pattern, check = _DETECTORS[policy]
        for m in pattern.finditer(text):
            if check is not None and not check(m.group(0)):
                continue
            if any(m.start() < c.end and c.start < m.end() for c in chosen):
                continue
            chosen.append(Match(m.start(), m.end(), policy))
    return sorted(chosen, key=lambda c: c.start)


def substitute(text: str, match: Match, sub: str) -> str:
    return "#" * len(text[match.start:match.end]) if sub == "hash" else f"[{match.policy.upper()}]"


def redact_text(text: str, policies: Sequence[str], sub: str) -> str:
    out, at = [], 0
    for m in find(text, policies):
        out += [text[at:m.start], substitute(text, m, sub)]
        at = m.end
    out.append(text[at:])
    return "".join(out)


def redact_words(words: Sequence[Word], policies: Sequence[str], sub: str) -> tuple[tuple[Word, ...], list[Redaction]]:
    """Redact over the words' joined text; the words a match touches become one word holding the
    substitute (with what of the first and last word lies outside the match), timed over them."""
    joined = "".join(w.word for w in words)
    bounds, at = [], 0
    for w in words:
        bounds.append((at, at + len(w.word)))
        at += len(w.word)
    out: list[Word] = []
    spans: list[Redaction] = []
    i = 0
    matches = find(joined, policies)
    for m in matches:
        touched = [n for n, (a, b) in enumerate(bounds) if a < m.end and m.start < b]
        if not touched:
            continue
        first, last = touched[0], touched[-1]
        out.extend(words[i:first])
        head = words[first].word[:m.start - bounds[first][0]] if m.start > bounds[first][0] else ""
        tail = words[last].word[m.end - bounds[last][0]:] if m.end < bounds[last][1] else ""
        group = words[first:last + 1]
        out.append(replace(words[first], word=head + substitute(joined, m, sub) + tail, end=words[last].end,
                           probability=min(w.probability for w in group)))
        spans.append(Redaction(start=words[first].start, end=words[last].end, policy=m.policy))
        i = last + 1
    out.extend(words[i:])
    return tuple(out), spans


def redact_segment(segment: Segment, policies: Sequence[str], sub: str) -> tuple[Segment, list[Redaction]]:
    text = redact_text(segment.text, policies, sub)
    if segment.words:
        words, spans = redact_words(segment.words, policies, sub)
        return replace(segment, text=text, words=words, tokens=()), spans
    # No words: the spans are timed from the segment's time spread over its text.
    _, spans = redact_words(estimate_words(segment), policies, sub)
    return replace(segment, text=text, tokens=()), spans


def redact(transcript: Transcript, policies: Sequence[str], sub: str) -> Transcript:
    segments: list[Segment] = []
    spans: list[Redaction] = list(transcript.redactions)
    for segment in transcript.segments:
        done, found = redact_segment(segment, policies, sub)
        segments.append(done)
        spans += found
    return replace(transcript, text=redact_text(transcript.text, policies, sub), segments=tuple(segments),
                   redactions=tuple(sorted(spans, key=lambda r: (r.start, r.end))))


# -- the audio ----------------------------------------------------------------------------------
TONE_HZ = 1000.0
TONE_LEVEL = 0.2  # -14 dBFS: plainly a bleep, not painfully loud


def redact_audio(audio: np.ndarray, spans: Sequence[Redaction], sample_rate: int) -> np.ndarray:
    """A copy of ``audio`` with each span replaced by a sine tone."""
    out = np.array(audio, dtype=np.float32, copy=True)
    for span in spans:
        a = max(0, int(span.start * sample_rate))
        b = min(len(out), int(np.ceil(span.end * sample_rate)))
        if b > a:
            t = np.arange(b - a, dtype=np.float32) / sample_rate
            out[a:b] = TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * t)
    return out


def to_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV."""
    import io
    import wave

    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
