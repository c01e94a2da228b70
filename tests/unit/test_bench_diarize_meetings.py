"""bench/diarize_meetings.py: the goals block judged from the rows, without any model."""

from __future__ import annotations

from bench.diarize_meetings import MeetingRow, goals, render


def row(name: str, ref: int, found: int, der: float, hinted: float | None = None, rtf: float = 0.04) -> MeetingRow:
    return MeetingRow(name=name, reference_speakers=ref, speakers=found, der=der, der_strict=der + 0.05, rtf=rtf,
                      hinted_speakers=ref, hinted_der=der if hinted is None else hinted,
                      hinted_der_strict=(der if hinted is None else hinted) + 0.05)


def test_goals_are_judged_from_the_rows() -> None:
    rows = [row("a", 2, 2, 0.05), row("b", 2, 2, 0.12), row("c", 4, 1, 0.02, hinted=0.05), row("d", 3, 3, 0.30)]
    judged = {goal: (measured, result) for goal, measured, result in goals(rows)}
    assert judged["mean DER at collar 0.25 s at most 0.20"] == ("0.122", "**met**")
    assert judged["every 2-person excerpt at most 0.10"] == ("a 0.050, b 0.120", "**missed**")
    assert judged["speaker count exact on at least 7 of 9"] == ("3 of 4", "**missed**")
    assert judged["count never off by more than one"] == ("c", "**missed**")
    assert judged["no excerpt without speakers"] == ("every one has speakers", "**met**")
    assert judged["with hints equal to the count, no excerpt worse"] == ("c (+0.030)", "**missed**")
    assert judged["at most 0.1x real time"] == ("0.040 at the slowest", "**met**")


def test_the_section_ends_with_the_goals() -> None:
    rows = [row(f"m{n}", 2, 2, 0.05) for n in range(9)]
    text = render({"device": "cpu", "threads": 1, "rows": [r.__dict__ for r in rows]})
    assert "| speaker count exact on at least 7 of 9 | 9 of 9 | **met** |" in text
    assert text.rstrip().endswith("| at most 0.1x real time | 0.040 at the slowest | **met** |")
