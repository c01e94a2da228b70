"""bench/gpu_check.py: `DEVICE=cpu make gpu-check` end to end, into a page of its own."""

from __future__ import annotations

from pathlib import Path

from bench.gpu_check import BEGIN, END, wer, write_section


def test_wer_counts_word_edits_without_case_or_punctuation() -> None:
    assert wer("Ask not, what!", "ask not what") == 0.0
    assert wer("a b c d", "a x c") == 0.5
    assert wer("sublicense it", "sublicence it") == 0.0


def test_write_section_replaces_only_its_own_part(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nwritten by hand\n\n<!-- END GENERATED -->\nafter\n")
    write_section(page, "## GPU check\n\nfirst")
    write_section(page, "## GPU check\n\nsecond")
    text = page.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "second" in text and "first" not in text
    assert text.startswith("# Benchmarks\n\nwritten by hand\n") and "<!-- END GENERATED -->\nafter\n" in text
