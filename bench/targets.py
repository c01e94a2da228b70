"""The seed's speed targets as a table: 1 minute, 5 minutes and a 30-minute video through the
service, first run (transcribed) and again (answered from the cache), for tiny.en and base.

The targets (1 minute under 8 s, 5 minutes under 30 s, a 30-minute video under 2 minutes) were
written for a GPU and the ``medium`` model; the table shows how the machine at hand compares.
``python -m bench --only targets`` runs this section alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.media import Library, Recording
from bench.report import secs, table, verdict

MODELS = ("tiny.en", "base")
# Recording key -> the seed's target, in seconds from upload to completed.
SEED_TARGETS = {"en60": 8.0, "flac5m": 30.0, "mp430m": 120.0}


@dataclass(frozen=True)
class TargetRow:
    model: str
    recording: str
    label: str
    audio_seconds: float
    first: float  # upload start to completed, transcribed (cache cleared before)
    cached: float  # the same upload again: answered from the cache
    target: float

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def recordings(lib: Library, quick: bool = False) -> list[Recording]:
    chosen = [lib.en60, lib.long_flac(5)]
    return chosen if quick else [*chosen, lib.long_video(30)]


def measure(
    lib: Library,
    transcribed: Callable[[Recording, dict[str, str]], float],
    again: Callable[[Recording, dict[str, str]], float],
    models: Sequence[str] = MODELS,
    quick: bool = False,
) -> list[TargetRow]:
    """One first run and one cached run of each recording with each model.

    ``transcribed(rec, fields)`` uploads with the cache cleared first and returns upload start to
    completed in seconds; ``again`` uploads without clearing (bench.run supplies both)."""
    rows = []
    for model in models:
        for rec in recordings(lib, quick):
            fields = {"model": model}
            first = transcribed(rec, fields)
            cached = again(rec, fields)
            rows.append(TargetRow(model, rec.key, rec.label, rec.seconds, first, cached,
                                  SEED_TARGETS[rec.key]))
    return rows


def render(rows: Sequence[dict[str, Any]]) -> str:
    """The section for docs/benchmarks.md (empty when the section did not run)."""
    if not rows:
        return ""
    body = [(r["model"], r["label"], f"< {secs(r['target'])}", secs(r["first"]),
             f"{r['audio_seconds'] / r['first']:.1f}×", verdict(r["first"] < r["target"]), secs(r["cached"]))
            for r in rows]
    return ("\n\n### The seed's targets on this machine\n\n"
            "Upload start to the client seeing `completed`, through the whole service as `make bench` starts "
            "it. *First run*: the transcript cache cleared before the upload (the first job of a model "
            "also loads it in the transcriber). *Cached*: the same upload again. The targets were "
            "written for a GPU and the `medium` model.\n\n"
            + table(("model", "recording", "seed's target", "first run", "speed (audio / wall)",
                     "target", "cached"), body))
