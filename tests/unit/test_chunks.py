"""Long recordings split at pauses, transcribed chunk by chunk, merged in order."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.transcript import Segment, Transcript
from pipeline.worker.chunks import merge, plan_chunks


def test_plan_cuts_in_pauses_and_covers_everything(long_file: Path) -> None:
    audio = decode_audio(long_file)
    plan = plan_chunks(audio, 45)
    assert len(plan) >= 3
    assert plan[0][0] == 0 and plan[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
    for _, cut in plan[:-1]:
        around = np.abs(audio[cut - 400 : cut + 400])  # 25 ms either side of the cut
        assert around.max() < 0.05, f"cut at {cut / SAMPLE_RATE:.2f} s is not in a pause"
    assert plan_chunks(audio[: 50 * SAMPLE_RATE], 45) == [(0, 50 * SAMPLE_RATE)]


def test_a_cut_lands_in_a_long_silence_that_starts_before_the_search(long_file: Path) -> None:
    """Only the 15 s either side of a target are searched; a silence that began earlier and runs
    into that stretch is still a pause to cut in, and silence alone there is cut in the middle."""
    speech = decode_audio(long_file)[: 40 * SAMPLE_RATE]
    audio = np.concatenate([speech, np.zeros(40 * SAMPLE_RATE, np.float32), speech]).astype(np.float32)
    plan = plan_chunks(audio, 65)  # the target, 65 s, falls in the silence from 40 s to 80 s
    assert len(plan) == 2
    assert 40 * SAMPLE_RATE < plan[0][1] < 80 * SAMPLE_RATE


def test_merge_orders_shifts_and_renumbers() -> None:
    def part(text: str, language: str = "en") -> Transcript:
        return Transcript(text=text, language=language, duration=10.0, segments=(
            Segment(id=0, start=0.5, end=4.0, text=f" {text} one"),
            Segment(id=1, start=4.0, end=9.5, text=f" {text} two")))

    merged = merge([(160_000, part("second")), (0, part("first")), (320_000, part("third", "de"))], 30.0)
    assert [s.id for s in merged.segments] == list(range(6))
    assert [s.start for s in merged.segments] == [0.5, 4.0, 10.5, 14.0, 20.5, 24.0]
    assert merged.text == "first second third" and merged.duration == 30.0
    assert merged.language == "en"


def test_merge_channels_labels_each_channel_and_orders_by_time() -> None:
    from pipeline.transcript import Redaction, Word
    from pipeline.worker.chunks import merge_channels

    left = Transcript(text=" left one", language="en", duration=5.0, segments=(
        Segment(id=0, start=0.0, end=2.0, text=" left one", words=(Word(0.0, 2.0, " left", 0.9),)),),
        redactions=(Redaction(0.5, 1.0, "number"),))
    right = Transcript(text=" right one", language="en", duration=5.0, segments=(
        Segment(id=0, start=1.0, end=3.0, text=" right one"),))
    later = Transcript(text=" left two", language="en", duration=5.0, segments=(
        Segment(id=0, start=0.5, end=1.0, text=" left two"),))
    merged = merge_channels([(2, 0, right), (1, 0, left), (1, 5 * SAMPLE_RATE, later)], 10.0)
    assert merged.channels == (1, 2)
    assert [(s.id, s.channel, s.start, s.text) for s in merged.segments] == [
        (0, 1, 0.0, " left one"), (1, 2, 1.0, " right one"), (2, 1, 5.5, " left two")]
    assert merged.segments[0].words is not None and merged.segments[0].words[0].channel == 1
    assert merged.text == "left one right one left two"
    assert merged.redactions == (Redaction(0.5, 1.0, "number"),)
