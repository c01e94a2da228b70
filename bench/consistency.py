"""Whether the same speech gives the same words wherever it falls in a recording.

Each of the nine real meeting excerpts is transcribed on its own, then again as a part of the
five-minute recording that holds all nine end to end (``Library.meet5m``). Nobody wrote down
what is said in the meetings, so the excerpt alone is the reference for its stretch of the long
recording: the word error rate between the two says how much the words move with their place.
Each decoder configuration is scored the same way, and so is the multilingual ``base`` model
(another model's hearing of the same audio: words both models write are likely speech, words
only one writes are suspect). ``repeats`` counts segments whose text repeats the one before:
a decoding loop. ``python -m bench --only consistency`` runs it alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.media import Library
from bench.report import table
from bench.speech import GAP_SECONDS, MEETINGS, meeting, wer, words
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Segment
from pipeline.worker.engines import ModelCache

# name, model, option fields: the service's default first
CONFIGS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("tiny.en, sequential (default)", "tiny.en", {"batch_size": "1"}),
    ("tiny.en, sequential, condition on previous text", "tiny.en", {"batch_size": "1",
                                                                    "condition_on_previous_text": "true"}),
    ("tiny.en, batched 4", "tiny.en", {"batch_size": "4"}),
    ("base, sequential", "base", {"batch_size": "1", "language": "en"}),
)


@dataclass(frozen=True)
class ConsistencyRow:
    config: str
    meeting: str
    words_alone: int
    words_inside: int
    moved: float  # WER of the stretch inside the long recording against the excerpt alone
    repeats_alone: int
    repeats_inside: int
    against_default: float  # WER of the excerpt alone against the default configuration's text

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def repeats(segments: Sequence[Segment]) -> int:
    texts = [" ".join(words(s.text)) for s in segments]
    return sum(1 for a, b in itertools.pairwise(texts) if a and a == b)


def _inside(segments: Sequence[Segment], start: float, end: float) -> list[Segment]:
    return [s for s in segments if start <= (s.start + s.end) / 2 < end]


def measure(lib: Library, model_dir: Path, configs: Sequence[tuple[str, str, dict[str, str]]] = CONFIGS,
            meetings: Sequence[str] = MEETINGS) -> list[ConsistencyRow]:
    settings = Settings.from_env({"DEVICE": "cpu", "CPU_THREADS": "1", "MODEL_DIR": str(model_dir),
                                  "MODEL_IDLE_TIMEOUT": "0", "MODELS": "tiny.en,base"})
    models = ModelCache(settings)
    excerpts = {name: meeting(lib.audio_dir, name) for name in meetings}
    offsets, at = {}, 0.0
    for name in meetings:
        offsets[name] = at
        at += len(excerpts[name]) / SAMPLE_RATE + GAP_SECONDS
    whole = lib.meet5m if tuple(meetings) == MEETINGS else None
    long_audio = decode_audio(whole.path) if whole else np.concatenate(
        [np.concatenate([excerpts[n], np.zeros(int(GAP_SECONDS * SAMPLE_RATE), np.float32)]) for n in meetings])
    rows: list[ConsistencyRow] = []
    default_text: dict[str, str] = {}
    for label, model, fields in configs:
        options = TranscribeOptions.parse({"model": model, **fields}, settings)
        engine = models.get(models.key_for(options, "cpu"))
        inside_all = engine.transcribe(long_audio, options, lambda segment: None).segments
        for name in meetings:
            alone = engine.transcribe(excerpts[name], options, lambda segment: None)
            start = offsets[name]
            inside = _inside(inside_all, start, start + len(excerpts[name]) / SAMPLE_RATE + GAP_SECONDS / 2)
            inside_text = " ".join(s.text for s in inside)
            default_text.setdefault(name, alone.text)
            rows.append(ConsistencyRow(label, name, len(words(alone.text)), len(words(inside_text)),
                                       wer(alone.text, inside_text), repeats(alone.segments), repeats(inside),
                                       wer(default_text[name], alone.text)))
    return rows


def render(rows: Sequence[dict[str, Any]]) -> str:
    """The section for docs/benchmarks.md (empty when the section did not run)."""
    if not rows:
        return ""
    body = [(r["config"], r["meeting"], str(r["words_alone"]), str(r["words_inside"]), f"{r['moved']:.1%}",
             f"{r['repeats_alone']} / {r['repeats_inside']}", f"{r['against_default']:.1%}") for r in rows]
    summary = []
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config]
        summary.append((config, f"{np.mean([r['moved'] for r in mine]):.1%}",
                        str(sum(r["repeats_alone"] + r["repeats_inside"] for r in mine)),
                        f"{np.mean([r['against_default'] for r in mine]):.1%}"))
    return ("\n\n### The same speech, the same words?\n\n"
            "Each real meeting excerpt transcribed alone and as a part of the five-minute recording of all nine "
            "(bare engine, one thread). *Moved*: word error rate of its stretch of the long recording against "
            "the excerpt alone. *Repeats*: segments repeating the one before (alone / inside). *Against the "
            "default*: the excerpt alone against the default configuration's text.\n\n"
            + table(("configuration", "mean moved", "repeats", "mean against the default"), summary)
            + "\n\n" + table(("configuration", "meeting", "words alone", "words inside", "moved", "repeats",
                              "against the default"), body))
