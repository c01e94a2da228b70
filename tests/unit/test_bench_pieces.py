"""bench/pieces.py: the job's wall time on the transcribers and the section's page."""

from __future__ import annotations

from bench.pieces import PiecesRow, makespan, render


def test_the_span_is_the_busiest_transcriber_taking_pieces_in_order() -> None:
    assert makespan([2.0, 1.0, 1.0], 2) == 2.0
    # The third piece goes to whichever transcriber is free first: the one that had 1 s.
    assert makespan([3.0, 1.0, 1.5], 2) == 3.0
    assert makespan([1.0, 1.0, 1.0, 1.0], 2) == 2.0
    assert makespan([1.0, 2.0], 1) == 3.0
    assert makespan([], 2) == 0.0


def test_the_page_sets_each_cut_beside_the_whole_recording() -> None:
    rows = [PiecesRow("m", 60.0, 1, [60.0], [4.0]).to_dict(),
            PiecesRow("m", 60.0, 2, [29.5, 30.5], [2.5, 1.5], 0.1).to_dict()]
    page = render(rows)
    assert "| m | whole |" in page
    # Two pieces on two transcribers: the job takes the slower piece, 2.5 s of the whole's 4 s.
    assert "| m | 2 (2 cut) | 29.5 + 30.5 | 2.50 + 1.50 | 4.00 s | 2.50 s | 0.62× | 10.0% |" in page
    assert "| 2 | 4.00 s | 2.50 s | 0.62× | 10.0% |" in page


def test_nothing_is_rendered_when_the_section_did_not_run() -> None:
    assert render([]) == ""
