"""bench/pieces.py: the `pieces` section of `make bench` on a real minute of meetings."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.media import Library
from bench.pieces import measure
from pipeline.settings import Settings
from tests.support.helpers import SHARED_AUDIO


@pytest.mark.skipif(not (SHARED_AUDIO / "meetings" / "dev00.wav").is_file(),
                    reason="../shared/audio/meetings is absent")
def test_the_section_decodes_a_minute_whole_and_in_pieces_cut_at_pauses(tmp_path: Path, settings: Settings) -> None:
    lib = Library(SHARED_AUDIO, tmp_path / "media")
    whole, halves = measure(lib, settings.model_dir, quick=True, counts=(2,))
    assert (whole.pieces, halves.pieces) == (1, 2)
    assert whole.moved == 0.0 and 0.0 <= halves.moved < 1.0
    # The planner's cuts cover the whole minute, each piece far from empty.
    assert abs(sum(halves.lengths) - whole.audio_seconds) < 0.2 and min(halves.lengths) > 20
    assert all(t > 0 for t in halves.times) and halves.span == max(halves.times)
