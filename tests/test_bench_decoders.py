"""bench/decoders.py: the `decoders` section of `make bench` (sequential against batched on the CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.decoders import measure, render
from bench.media import Library
from pipeline.settings import Settings
from tests.helpers import SHARED_AUDIO


@pytest.mark.skipif(not (SHARED_AUDIO / "multilingual.mp3").is_file(), reason="../shared/audio is absent")
def test_the_section_times_and_scores_each_decoder(tmp_path: Path, settings: Settings) -> None:
    lib = Library(SHARED_AUDIO, tmp_path / "media")
    rows = measure(lib, settings.model_dir, runs=1, quick=True, batches=(1, 4), threads=(1,))
    assert [(r.recording, r.threads, r.batch_size) for r in rows] == [("en60", 1, 1), ("en60", 1, 4)]
    assert all(r.seconds > 0 and r.audio_seconds > 60 for r in rows)
    # Batched decoding keeps the words (the gaps it leaves are decoded again): within a point or
    # two of sequential, never far above it.
    sequential, batched = rows
    assert sequential.wer < 0.05 and batched.wer < sequential.wer + 0.02
    page = render([r.to_dict() for r in rows])
    assert "| sequential |" in page and "| batched, 4 |" in page and "| 1.00× |" in page


def test_nothing_is_rendered_when_the_section_did_not_run() -> None:
    assert render([]) == ""
