"""Re-flowed subtitle cues, checked through the SRT and WebVTT writers and independent parsers."""

from __future__ import annotations

import io
import itertools

import pytest
import srt
import webvtt

from pipeline.captions import check, reflow
from pipeline.errors import InvalidOption
from pipeline.formats import render
from pipeline.transcript import Segment, Transcript

TEXT = " And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
T = Transcript(text=TEXT, language="en", duration=11.0, segments=(Segment(id=0, start=0.0, end=11.0, text=TEXT),))


def test_lines_hold_at_most_the_characters_and_cues_the_lines() -> None:
    cues = reflow(T, 20, 2)
    assert all(len(line) <= 20 for c in cues for line in c.lines)
    assert all(1 <= len(c.lines) <= 2 for c in cues)
    assert " ".join(line for c in cues for line in c.lines) == TEXT.strip()
    assert cues[0].start == 0.0 and cues[-1].end == 11.0
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))


def test_srt_and_vtt_parse_with_the_reflowed_cues() -> None:
    cues = reflow(T, 32, 2)
    body, _ = render(T, "srt", cues=cues)
    parsed = list(srt.parse(body))
    assert len(parsed) == len(cues) > 1
    assert all(len(line) <= 32 for p in parsed for line in p.content.split("\n"))
    vtt, _ = render(T, "vtt", cues=cues)
    captions = webvtt.from_buffer(io.StringIO(vtt))
    assert [c.text.split("\n") for c in captions] == [list(c.lines) for c in cues]


def test_a_channel_change_starts_a_cue_labelled_with_it() -> None:
    t = Transcript(text="", language="en", duration=2.0, channels=(1, 2), segments=(
        Segment(id=0, start=0.0, end=1.0, text=" left side", channel=1),
        Segment(id=1, start=1.0, end=2.0, text=" right side", channel=2)))
    body, _ = render(t, "srt", cues=reflow(t, 42))
    assert [p.content for p in srt.parse(body)] == ["[Channel 1] left side", "[Channel 2] right side"]


@pytest.mark.parametrize("chars, lines, fmt, field", [
    (5, None, "srt", "chars_per_caption"), (None, 9, "vtt", "max_lines"), (30, None, "json", "chars_per_caption"),
])
def test_bad_values_name_the_field(chars: int | None, lines: int | None, fmt: str, field: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        check(chars, lines, fmt)
    assert caught.value.field == field


def test_no_values_keep_one_cue_per_segment() -> None:
    assert check(None, None, "srt") is None
    assert check(None, 2, "srt") == (42, 2)
