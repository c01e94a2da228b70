"""faster-whisper's sequential decoder against its batched one, on the CPU, in this process.

The service decodes sequentially by default on the CPU (``pipeline.worker.engines.batched.AUTO_CPU_BATCH``)
and batched on CUDA; this section is the CPU measurement behind that choice: real meetings and
English of known words, each decoder, with one engine
thread (what a transcriber process has at the default layout on 2 cores) and with two (the
direct baseline's), timed as the median of ``runs`` and scored by word error rate.
``python -m bench --only decoders`` runs it alone (on GPUs, ``make gpu-check`` compares the
batch sizes instead).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.media import Library, Recording
from bench.report import secs, table
from bench.speech import wer
from pipeline.media import decode_audio
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.worker.engines import ModelCache

BATCHES = (1, 4, 8)  # 1: the sequential decoder
THREADS = (1, 2)


@dataclass(frozen=True)
class DecoderRow:
    recording: str
    label: str
    audio_seconds: float
    threads: int
    batch_size: int
    seconds: float  # median transcription time, audio already decoded
    wer: float
    cpu: float = 0.0  # median CPU seconds of this process (all its threads): what a loaded machine pays
    scored_against: str = "words"  # or "first decoder": the meetings' words are not known

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def recordings(lib: Library, quick: bool = False) -> list[Recording]:
    return [lib.meet60] if quick else [lib.meet60, lib.meet5m, lib.en60]


def measure(lib: Library, model_dir: Path, runs: int, quick: bool = False,
            batches: Sequence[int] = BATCHES, threads: Sequence[int] = THREADS) -> list[DecoderRow]:
    rows = []
    for count in threads:
        settings = Settings.from_env({"DEVICE": "cpu", "CPU_THREADS": str(count), "MODEL_DIR": str(model_dir),
                                      "MODEL_IDLE_TIMEOUT": "0"})
        models = ModelCache(settings)
        engine = models.get(models.key_for(TranscribeOptions(), "cpu"))
        for rec in recordings(lib, quick):
            audio = decode_audio(rec.path)
            # Where nobody wrote the words down (the meetings), the first decoder's text (the
            # sequential one, the bare engine's) is the reference.
            reference = rec.reference
            for batch in batches:
                options = TranscribeOptions(batch_size=batch)
                times, cpu, text = [], [], ""
                for _ in range(runs):
                    started, used = time.perf_counter(), time.process_time()
                    text = engine.transcribe(audio, options, lambda segment: None).text
                    times.append(time.perf_counter() - started)
                    cpu.append(time.process_time() - used)
                reference = reference or text
                rows.append(DecoderRow(rec.key, rec.label, rec.seconds, count, batch, statistics.median(times),
                                       wer(reference, text), statistics.median(cpu),
                                       "words" if rec.reference else "first decoder"))
    return rows


def render(rows: Sequence[dict[str, Any]]) -> str:
    """The section for docs/benchmarks.md (empty when the section did not run)."""
    if not rows:
        return ""
    sequential = {(r["recording"], r["threads"]): r for r in rows if r["batch_size"] == 1}
    body = [(r["label"], str(r["threads"]), "sequential" if r["batch_size"] == 1 else f"batched, {r['batch_size']}",
             secs(r["seconds"]), f"{r['seconds'] / sequential[(r['recording'], r['threads'])]['seconds']:.2f}×",
             secs(r.get("cpu", 0.0)),
             f"{r.get('cpu', 0.0) / max(sequential[(r['recording'], r['threads'])].get('cpu', 0.0), 1e-9):.2f}×",
             f"{r['wer']:.1%}" + ("" if r.get("scored_against", "words") == "words" else " (against sequential)"))
            for r in rows]
    return ("\n\n### Sequential against batched decoding (CPU)\n\n"
            "faster-whisper in the benchmark's own process, the model loaded and the audio decoded "
            "before the clock starts; the median of the runs. *Against sequential*: the same recording "
            "and threads with the sequential decoder. *CPU*: the CPU seconds the decoding took over all "
            "its threads, which is what a machine busy with other jobs pays, and which other work on "
            "the machine disturbs far less than wall time. WER is against the known words where there are some, "
            "else against the sequential decoder's own text. The service decodes sequentially on the CPU.\n\n"
            + table(("recording", "engine threads", "decoder", "transcription", "against sequential", "CPU",
                     "CPU against sequential", "WER"), body))
