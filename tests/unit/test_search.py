"""Search over a transcript's words."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidOption
from pipeline.search import parse_terms, search
from pipeline.transcript import Segment, Transcript, Word


def test_case_and_punctuation_do_not_matter_and_phrases_match_in_a_row() -> None:
    words = (Word(0.0, 0.5, " Ask", 0.9), Word(0.5, 1.0, " not,", 0.9), Word(1.0, 1.5, " what", 0.9),
             Word(2.0, 2.5, " ask", 0.9), Word(2.5, 3.0, " NOT!", 0.9), Word(3.0, 3.5, " Don't.", 0.9))
    t = Transcript(text="", language="en", duration=4.0, segments=(
        Segment(id=0, start=0.0, end=3.5, text="".join(w.word for w in words), words=words),))
    assert search(t, parse_terms("ask not, dont ,missing")) == [
        {"text": "ask not", "count": 2, "timestamps": [[0.0, 1.0], [2.0, 3.0]]},
        {"text": "dont", "count": 1, "timestamps": [[3.0, 3.5]]},
        {"text": "missing", "count": 0, "timestamps": []},
    ]


def test_without_words_the_segment_time_is_spread() -> None:
    t = Transcript(text="", language="en", duration=10.0, segments=(
        Segment(id=0, start=2.0, end=4.0, text=" the cat sat"),))
    [match] = search(t, ["CAT"])
    [[start, end]] = match["timestamps"]
    assert 2.0 < start < end < 4.0


def test_a_phrase_does_not_match_across_channels() -> None:
    t = Transcript(text="", language="en", duration=2.0, channels=(1, 2), segments=(
        Segment(id=0, start=0.0, end=1.0, text=" hello", channel=1),
        Segment(id=1, start=1.0, end=2.0, text=" world", channel=2)))
    assert search(t, ["hello world"])[0]["count"] == 0
    assert search(t, ["world"])[0]["count"] == 1


@pytest.mark.parametrize("raw", ["", " , ", "!!!", ",".join(f"w{i}" for i in range(60))])
def test_bad_terms_name_the_field(raw: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        parse_terms(raw)
    assert caught.value.field == "words"
