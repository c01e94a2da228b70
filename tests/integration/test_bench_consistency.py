"""bench/consistency.py: the same speech alone and inside a longer recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.consistency import measure, render, repeats
from bench.media import Library
from pipeline.settings import Settings
from pipeline.transcript import Segment
from tests.support.helpers import SHARED_AUDIO


def _segment(n: int, text: str) -> Segment:
    return Segment(id=n, start=float(n), end=float(n + 1), text=text)


def test_repeats_counts_a_segment_that_says_what_the_one_before_said() -> None:
    said = ["Not at all.", "not at all", "Not at all!", "Fine.", "", ""]
    assert repeats([_segment(n, text) for n, text in enumerate(said)]) == 2


@pytest.mark.skipif(not (SHARED_AUDIO / "meetings" / "dev00.wav").is_file(),
                    reason="../shared/audio/meetings is absent")
def test_each_excerpt_is_scored_alone_and_inside_the_long_recording(tmp_path: Path, settings: Settings) -> None:
    lib = Library(SHARED_AUDIO, tmp_path / "media")
    configs = (("default", "tiny.en", {"batch_size": "1"}),)
    rows = measure(lib, settings.model_dir, configs=configs, meetings=("trn03", "trn09"))
    assert [(r.config, r.meeting) for r in rows] == [("default", "trn03"), ("default", "trn09")]
    # Two clear excerpts: most of their words come back wherever they stand.
    assert all(r.words_alone > 40 and r.words_inside > 40 for r in rows)
    assert all(r.moved < 0.5 and r.against_default == 0.0 for r in rows)
    page = render([r.to_dict() for r in rows])
    assert "| default | trn03 |" in page and "mean moved" in page
    assert render([]) == ""
