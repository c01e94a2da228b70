"""Into how many pieces one job is best cut: the split's measurement on real meetings.

A recording over ``SPLIT_MIN_SECONDS`` is cut, at pauses, into as many pieces as there are idle
transcribers (``pipeline.worker.split``), and the job waits for its slowest transcriber. Cutting
finer lets a queue even out pieces that cost unequal time, but every piece is another padded
30 s window for the encoder and a cut that costs Whisper its context. This section decodes each
minute of meetings (``Library.meetings60``) whole and cut into 2, 3 and 4 pieces by the
service's own planner, each piece on one engine thread (a transcriber process at the default
layout), and reports the pieces' CPU, the *span* (the wall time of the job on ``WORKERS``
transcribers that each take the next piece when free) and how far the joined text moves from
the whole recording's. ``python -m bench --only pieces`` runs it alone.
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.media import Library
from bench.report import secs, table
from bench.speech import wer
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.worker.chunks import plan_chunks
from pipeline.worker.engines import ModelCache

PIECES = (2, 3, 4)
WORKERS = 2  # transcriber processes at the default layout on 2 cores
MINUTES = 9  # every excerpt starts one minute, so each is in two


@dataclass(frozen=True)
class PiecesRow:
    recording: str
    audio_seconds: float
    pieces: int  # asked of the planner (1: whole); it may cut one more or fewer at the pauses it finds
    lengths: list[float] = field(default_factory=list)  # seconds of audio per piece
    times: list[float] = field(default_factory=list)  # decode seconds per piece
    moved: float = 0.0  # WER of the joined text against the whole recording's

    @property
    def span(self) -> float:
        return makespan(self.times, WORKERS)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "span": self.span}


def makespan(times: Sequence[float], workers: int) -> float:
    """Wall time of pieces taken in order by ``workers`` that each take the next one when free."""
    free = [0.0] * max(1, workers)
    for seconds in times:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def measure(lib: Library, model_dir: Path, quick: bool = False, counts: Sequence[int] = PIECES) -> list[PiecesRow]:
    settings = Settings.from_env({"DEVICE": "cpu", "CPU_THREADS": "1", "MODEL_DIR": str(model_dir),
                                  "MODEL_IDLE_TIMEOUT": "0"})
    models = ModelCache(settings)
    engine = models.get(models.key_for(TranscribeOptions(), "cpu"))
    options = TranscribeOptions()

    def decode(samples: Any) -> tuple[float, str]:
        started = time.perf_counter()
        text = engine.transcribe(samples, options, lambda segment: None).text
        return time.perf_counter() - started, text

    decode(decode_audio(lib.jfk.path))  # the first decode pays for the model's warm-up
    rows = []
    for rec in lib.meetings60(1 if quick else MINUTES):
        audio = decode_audio(rec.path)
        seconds, whole = decode(audio)
        rows.append(PiecesRow(rec.label, rec.seconds, 1, [rec.seconds], [seconds], 0.0))
        for count in counts:
            plan = plan_chunks(audio, len(audio) / SAMPLE_RATE / count)
            decoded = [decode(audio[a:b]) for a, b in plan]
            rows.append(PiecesRow(rec.label, rec.seconds, count, [round((b - a) / SAMPLE_RATE, 1) for a, b in plan],
                                  [t for t, _ in decoded], wer(whole, " ".join(text for _, text in decoded))))
    return rows


def render(rows: Sequence[dict[str, Any]]) -> str:
    """The section for docs/benchmarks.md (empty when the section did not run)."""
    if not rows:
        return ""
    whole = {r["recording"]: r["span"] for r in rows if r["pieces"] == 1}
    body = [(r["recording"], "whole" if r["pieces"] == 1 else f"{r['pieces']} ({len(r['lengths'])} cut)",
             " + ".join(f"{s:.1f}" for s in r["lengths"]) if r["pieces"] > 1 else "",
             " + ".join(f"{t:.2f}" for t in r["times"]), secs(sum(r["times"])), secs(r["span"]),
             f"{r['span'] / whole[r['recording']]:.2f}×", f"{r['moved']:.1%}")
            for r in rows]
    summary = []
    for count in sorted({r["pieces"] for r in rows}):
        mine = [r for r in rows if r["pieces"] == count]
        summary.append(("whole" if count == 1 else str(count), secs(statistics.mean(sum(r["times"]) for r in mine)),
                        secs(statistics.mean(r["span"] for r in mine)),
                        f"{statistics.mean(r['span'] / whole[r['recording']] for r in mine):.2f}×",
                        f"{statistics.mean(r['moved'] for r in mine):.1%}"))
    return ("\n\n### Into how many pieces one job is cut\n\n"
            "Each minute of meetings decoded whole and cut at pauses by the service's planner, every "
            f"piece on one engine thread in the benchmark's process. *Span*: the job's wall time on {WORKERS} "
            "transcribers that each take the next piece when free. *Moved*: the joined text's WER against "
            "the whole recording's. The service cuts a lone job into as many pieces as there are idle "
            "transcribers.\n\n"
            + table(("pieces asked", "mean CPU", "mean span", "span against whole", "mean moved"), summary)
            + "\n\n"
            + table(("recording", "pieces asked (cut)", "piece lengths (s)", "piece times (s)", "CPU", "span",
                     "against whole", "moved"), body))
