"""pipeline/worker/diarization/turns.py: speaker names and the frame-mask bookkeeping behind turns."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.worker.diarization.turns import drop_short, fill_gaps, hysteresis, runs, smooth_labels, speaker_name


def mask(text: str) -> np.ndarray:
    """A boolean mask written as a string of '#' (true) and '.' (false), for readable cases."""
    return np.array([c == "#" for c in text], dtype=bool)


def text(values: np.ndarray) -> str:
    return "".join("#" if v else "." for v in values.tolist())


@pytest.mark.parametrize(("index", "name"), [(0, "SPEAKER_00"), (7, "SPEAKER_07"), (12, "SPEAKER_12"),
                                             (123, "SPEAKER_123")])
def test_speaker_names_are_two_digits_at_least(index: int, name: str) -> None:
    assert speaker_name(index) == name


@pytest.mark.parametrize(("frames", "expected"), [
    ("", []),
    ("....", []),
    ("####", [(0, 4)]),
    ("##.#", [(0, 2), (3, 4)]),
    (".#..##.", [(1, 2), (4, 6)]),
])
def test_runs_are_half_open_ranges_of_true_frames(frames: str, expected: list[tuple[int, int]]) -> None:
    assert runs(mask(frames)) == expected


def test_runs_read_any_nonzero_value_as_true() -> None:
    assert runs(np.array([0, 2, 5, 0, -1])) == [(1, 3), (4, 5)]


def test_hysteresis_starts_above_onset_and_holds_until_below_offset() -> None:
    scores = np.array([0.3, 0.5, 0.6, 0.45, 0.41, 0.35, 0.45, 0.55, 0.4])
    # 0.5 does not start (strictly above onset); 0.45 holds once active but does not start.
    assert text(hysteresis(scores, onset=0.5, offset=0.4)) == "..###..#."


def test_fill_gaps_closes_only_short_gaps_between_two_runs() -> None:
    before = mask("..#..#...#.")
    after = fill_gaps(before, max_gap=2)
    # The 3-frame gap stays, and so do the false frames before the first run and after the last.
    assert text(after) == "..####...#."
    assert text(before) == "..#..#...#.", "the input is left as it was"


def test_drop_short_removes_runs_under_the_minimum_length() -> None:
    before = mask("#.##.###")
    assert text(drop_short(before, min_len=2)) == "..##.###"
    assert text(drop_short(before, min_len=1)) == "#.##.###"
    assert text(before) == "#.##.###"


def test_smooth_labels_gives_a_short_run_its_longer_neighbours_label() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2, 2, 2])
    assert smooth_labels(labels, min_len=2).tolist() == [0, 0, 0, 2, 2, 2, 2, 2]
    # A tie goes to the left neighbour.
    assert smooth_labels(np.array([0, 0, 1, 2, 2]), min_len=2).tolist() == [0, 0, 0, 2, 2]
    assert labels.tolist() == [0, 0, 0, 1, 2, 2, 2, 2], "the input is left as it was"


def test_smooth_labels_keeps_going_until_every_run_is_long_enough() -> None:
    # The first frame has only a right neighbour; merged, its run is still too short and merges again.
    assert smooth_labels(np.array([0, 1, 2, 2, 2]), min_len=3).tolist() == [2, 2, 2, 2, 2]


def test_smooth_labels_never_crosses_silence() -> None:
    # Speaker 1 is heard alone between two silences (-1): a stretch of one run is left as it is.
    labels = np.array([0, 0, 0, -1, 1, -1, 0, 0])
    assert smooth_labels(labels, min_len=2).tolist() == [0, 0, 0, -1, 1, -1, 0, 0]
    assert smooth_labels(np.array([-1, -1]), min_len=3).tolist() == [-1, -1]
