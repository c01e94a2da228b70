"""PII redaction: the detectors, substitution in text and words, and the toned-out audio."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import redaction
from pipeline.errors import InvalidOption
from pipeline.transcript import Segment, Transcript, Word

TEXT = ("Mail john.doe@example.com or call 555-123-4567. Card 4111 1111 1111 1111, not 4111 1111 1111 1112. "
        "IBAN GB82 WEST 1234 5698 7654 32, SSN 123-45-6789, host 192.168.0.1 or 2001:db8::1 at 10:30 with 42 people.")


def found(text: str, *policies: str) -> list[tuple[str, str]]:
    return [(m.policy, text[m.start:m.end]) for m in redaction.find(text, policies or redaction.POLICIES)]


def test_each_policy_finds_its_kind() -> None:
    hits = found(TEXT)
    for pair in [("email_address", "john.doe@example.com"), ("phone_number", "555-123-4567"),
                 ("credit_card_number", "4111 1111 1111 1111"), ("iban", "GB82 WEST 1234 5698 7654 32"),
                 ("us_social_security_number", "123-45-6789"), ("ip_address", "192.168.0.1"),
                 ("ip_address", "2001:db8::1"), ("number", "42")]:
        assert pair in hits
    # The Luhn check: a card number that fails it is no card (only numbers, with "number").
    assert ("credit_card_number", "4111 1111 1111 1112") not in hits
    assert not [h for h in found(TEXT, "credit_card_number") if h[1].endswith("1112")]


def test_checks_refuse_lookalikes() -> None:
    assert found("IBAN GB83 WEST 1234 5698 7654 32", "iban") == []  # wrong check digits
    assert found("SSN 000-12-3456 or 666-12-3456", "us_social_security_number") == []
    assert found("version 1.2.3.4 and 999.1.1.1", "ip_address") == [("ip_address", "1.2.3.4")]


def test_entity_and_hash_substitution() -> None:
    text = "Call 555-123-4567 now."
    assert redaction.redact_text(text, ["phone_number"], "entity_name") == "Call [PHONE_NUMBER] now."
    assert redaction.redact_text(text, ["phone_number"], "hash") == "Call ############ now."
    assert redaction.redact_text(text, ["email_address"], "hash") == text


def test_words_are_redacted_and_spans_timed_from_them() -> None:
    words = (Word(0.0, 0.4, " Call", 0.9), Word(0.4, 0.8, " 555", 0.9), Word(0.8, 1.2, "-123", 0.9),
             Word(1.2, 1.6, "-4567.", 0.9), Word(1.6, 2.0, " Bye.", 0.9))
    segment = Segment(id=0, start=0.0, end=2.0, text=" Call 555-123-4567. Bye.", tokens=(1, 2, 3), words=words)
    t = redaction.redact(Transcript(text=segment.text, language="en", duration=2.0, segments=(segment,)),
                         ["phone_number"], "entity_name")
    assert t.text == " Call [PHONE_NUMBER]. Bye."
    assert [w.word for w in t.segments[0].words or ()] == [" Call", " [PHONE_NUMBER].", " Bye."]
    assert t.segments[0].tokens == ()  # token ids would spell the number again
    assert [(r.start, r.end, r.policy) for r in t.redactions] == [(0.4, 1.6, "phone_number")]


def test_without_words_spans_are_spread_over_the_segment() -> None:
    segment = Segment(id=0, start=10.0, end=12.0, text=" We had 42 people")
    t = redaction.redact(Transcript(text=segment.text, language="en", duration=12.0, segments=(segment,)),
                         ["number"], "hash")
    assert t.segments[0].text == " We had ## people"
    [span] = t.redactions
    assert 10.0 < span.start < span.end < 12.0


def test_audio_gets_a_tone_over_each_span_only() -> None:
    rate = 16000
    audio = np.zeros(rate * 2, dtype=np.float32)
    out = redaction.redact_audio(audio, [redaction.Redaction(0.5, 1.0, "number")], rate)
    assert np.abs(out[: rate // 2 - 1]).max() == 0 and np.abs(out[rate + 1:]).max() == 0
    tone = out[rate // 2: rate]
    assert 0.15 < np.abs(tone).max() <= redaction.TONE_LEVEL
    spectrum = np.abs(np.fft.rfft(tone))
    assert abs(np.argmax(spectrum) * rate / len(tone) - redaction.TONE_HZ) < 5
    assert audio.max() == 0  # the input is left alone
    wav = redaction.to_wav(out, rate)
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * len(out)


def test_policies_parse_and_refuse_unknown_names() -> None:
    assert redaction.parse_policies("number, email_address") == ("email_address", "number")
    assert redaction.parse_policies(["phone_number"]) == ("phone_number",)
    with pytest.raises(InvalidOption, match="unknown policy 'passport'") as caught:
        redaction.parse_policies("email_address,passport")
    assert caught.value.field == "redact_pii_policies"
