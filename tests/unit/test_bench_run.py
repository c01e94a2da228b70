"""The benchmark's command line: where a run's page is written."""

from __future__ import annotations

from pathlib import Path

from bench.run import ROOT, SECTIONS, parse_args


def test_only_a_whole_run_writes_the_results_page() -> None:
    assert parse_args([]).output == ROOT / "docs/benchmarks.md"
    assert parse_args(["--only", ",".join(SECTIONS)]).output == ROOT / "docs/benchmarks.md"
    # A part (some sections, or the quick run) would replace the whole run's results with it.
    assert parse_args(["--only", "live"]).output == ROOT / "data/bench/benchmarks-quick.md"
    assert parse_args(["--quick"]).output == ROOT / "data/bench/benchmarks-quick.md"
    assert parse_args(["--only", "live", "--output", "/tmp/page.md"]).output == Path("/tmp/page.md")
    assert parse_args(["--only", "live,pieces"]).sections == ("live", "pieces")
