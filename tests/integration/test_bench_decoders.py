"""bench/decoders.py: the `decoders` section of `make bench` (sequential against batched on the CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.decoders import measure, render
from bench.media import Library
from pipeline.settings import Settings
from tests.support.helpers import SHARED_AUDIO

needs_meetings = pytest.mark.skipif(not (SHARED_AUDIO / "meetings" / "dev00.wav").is_file(),
                                    reason="../shared/audio/meetings is absent")


@needs_meetings
def test_the_section_times_and_scores_each_decoder_on_real_meetings(tmp_path: Path, settings: Settings) -> None:
    lib = Library(SHARED_AUDIO, tmp_path / "media")
    rows = measure(lib, settings.model_dir, runs=1, quick=True, batches=(1, 4), threads=(1,))
    assert [(r.recording, r.threads, r.batch_size) for r in rows] == [("meet60", 1, 1), ("meet60", 1, 4)]
    assert all(r.seconds > 0 and r.audio_seconds > 60 for r in rows)
    # Nobody wrote the meetings' words down: the sequential decoder's text is the reference, so it
    # scores 0 against itself and the batched one is scored against it.
    sequential, batched = rows
    assert sequential.scored_against == batched.scored_against == "first decoder"
    assert sequential.wer == 0.0 and 0.0 <= batched.wer < 1.0
    page = render([r.to_dict() for r in rows])
    assert "| sequential |" in page and "| batched, 4 |" in page and "| 1.00× |" in page
    assert "(against sequential)" in page


def test_nothing_is_rendered_when_the_section_did_not_run() -> None:
    assert render([]) == ""


@needs_meetings
def test_the_ceiling_runs_the_bare_engine_in_processes_and_counts_its_cpu(tmp_path: Path,
                                                                         settings: Settings) -> None:
    from bench.direct import run_in_processes

    lib = Library(SHARED_AUDIO, tmp_path / "media")
    wall, cpu = run_in_processes(settings.model_dir, [lib.jfk.path, lib.jfk.path], 2, 1, lib.jfk.path)
    # Two processes of one thread each: the CPU they report is the work of both, never more than
    # two cores' worth of the wall time.
    assert wall > 0 and 0 < cpu <= 2 * wall + 0.5
