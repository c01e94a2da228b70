"""custom_spelling: parsing, and rules applied to text and words."""

from __future__ import annotations

import json

import pytest

from pipeline import spelling
from pipeline.errors import InvalidOption
from pipeline.transcript import Segment, Transcript, Word


def rules(value: object) -> list[spelling.Rule]:
    return spelling.rules_from(spelling.parse(json.dumps(value)))


def test_whole_words_any_case_punctuation_kept() -> None:
    r = rules([{"from": ["sequel"], "to": "SQL"}])
    assert spelling.apply_text("Sequel, sequels and SEQUEL.", r) == "SQL, sequels and SQL."


def test_multi_word_and_longest_first() -> None:
    r = rules([{"from": ["new york"], "to": "NY"}, {"from": ["new york city"], "to": "NYC"}])
    assert spelling.apply_text("From New York City to new  york.", r) == "From NYC to NY."


def test_words_merge_with_the_time_of_those_they_replace() -> None:
    r = rules([{"from": ["comfy eye", "comfy UI"], "to": "ComfyUI"}])
    words = (Word(0.0, 0.5, " I", 0.9), Word(0.5, 1.0, " use", 0.9), Word(1.0, 1.4, " comfy", 0.8),
             Word(1.4, 1.9, " eye.", 0.6))
    out = spelling.apply_words(words, r)
    assert [w.word for w in out] == [" I", " use", " ComfyUI."]
    assert (out[-1].start, out[-1].end, out[-1].probability) == (1.0, 1.9, 0.6)
    segment = Segment(id=0, start=0.0, end=1.9, text=" I use comfy eye.", words=words)
    t = spelling.apply(Transcript(text=" I use comfy eye.", language="en", duration=2.0, segments=(segment,)), r)
    assert t.text == " I use ComfyUI." and t.segments[0].text == " I use ComfyUI."


def test_canonical_form_is_the_cache_key_part() -> None:
    a = spelling.parse('[{"from": ["  a   b "], "to": " X "}]')
    b = spelling.parse([{"to": "X", "from": ["a b"]}])
    assert a == b
    assert spelling.parse("") is None and spelling.parse("[]") is None


@pytest.mark.parametrize("value, problem", [
    ("not json", "not JSON"),
    ('{"from": ["a"], "to": "b"}', "not dict"),
    ('[{"from": "a", "to": "b"}]', "custom_spelling[0].from"),
    ('[{"from": [], "to": "b"}]', "custom_spelling[0].from"),
    ('[{"from": ["a"]}]', "custom_spelling[0] must be an object"),
    ('[{"from": ["a"], "to": 3}]', "custom_spelling[0].to"),
    ('[{"from": ["..."], "to": "b"}]', "only spaces or punctuation"),
    (json.dumps([{"from": ["a"], "to": "b"}] * (spelling.MAX_RULES + 1)), "at most"),
])
def test_bad_values_name_the_field(value: str, problem: str) -> None:
    with pytest.raises(InvalidOption, match="custom_spelling") as caught:
        spelling.parse(value)
    assert caught.value.field == "custom_spelling" and problem in caught.value.message
