"""The engine called directly, in this process: the baseline the service is measured against.

The model is loaded once, outside every timing, through the same per-process model cache a
transcribe worker keeps (``pipeline.worker.engines.ModelCache``), with the same settings
(``DEVICE=cpu``, the same ``CPU_THREADS``). Each timed run decodes the file with the
service's own decoder (``pipeline.media.decode_audio``) and transcribes it: the work a
worker does for a job, without the upload, the queues, Redis or the files in between.
"""

from __future__ import annotations

import gc
import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.media import decode_audio
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.worker.chunks import plan_chunks
from pipeline.worker.engines import ModelCache


@dataclass(frozen=True)
class DirectRun:
    decode: float
    transcribe: float
    gc: float  # a gc.collect() after the job, as the worker's release_memory() does (not in total)
    cpu: float  # CPU seconds this process used for decode + transcribe (all its threads)
    segments: int
    text: str

    @property
    def total(self) -> float:
        return self.decode + self.transcribe


class Direct:
    def __init__(self, model_dir: Path, cpu_threads: int) -> None:
        # BATCH_SIZE=1: faster-whisper's own sequential decoder, the bare engine as a user would call
        # it; the service's default (batched on long audio, split across transcribers) is measured
        # against that.
        self.settings = Settings.from_env({"DEVICE": "cpu", "CPU_THREADS": str(cpu_threads), "BATCH_SIZE": "1",
                                           "MODEL_DIR": str(model_dir), "MODEL_IDLE_TIMEOUT": "0"})
        self.models = ModelCache(self.settings)
        self.load_seconds: dict[str, float] = {}

    def options(self, engine: str = "faster-whisper") -> TranscribeOptions:
        return TranscribeOptions.parse({"engine": engine}, self.settings)

    def load(self, engine: str, warm_with: Path) -> float:
        """Load the engine's model (timed, once) and transcribe ``warm_with`` once, untimed, so
        that later runs find it as warm as a worker that has done a job: the service is warmed
        up the same way."""
        key = self.models.key_for(self.options(engine), "cpu")
        if engine not in self.load_seconds:
            started = time.perf_counter()
            self.models.get(key)
            self.load_seconds[engine] = time.perf_counter() - started
            self.run(warm_with, engine)
        return self.load_seconds[engine]

    def run(self, path: Path, engine: str = "faster-whisper") -> DirectRun:
        options = self.options(engine)
        model = self.models.get(self.models.key_for(options, "cpu"))
        cpu = time.process_time()
        started = time.perf_counter()
        audio = decode_audio(path)
        decoded = time.perf_counter()
        transcript = model.transcribe(audio, options, lambda segment: None)
        done = time.perf_counter()
        cpu = time.process_time() - cpu
        gc.collect()
        collected = time.perf_counter()
        return DirectRun(decoded - started, done - decoded, collected - done, cpu, len(transcript.segments),
                         transcript.text)

    def run_chunked(self, path: Path, chunk_seconds: int, engine: str = "faster-whisper") -> DirectRun:
        """What one transcriber process does with a long recording, without the service: decode,
        plan the chunks (``decode`` includes the planning here), transcribe them one after another
        and join their texts as ``pipeline.worker.chunks.merge`` does."""
        options = self.options(engine)
        model = self.models.get(self.models.key_for(options, "cpu"))
        cpu = time.process_time()
        started = time.perf_counter()
        audio = decode_audio(path)
        plan = plan_chunks(audio, chunk_seconds)
        planned = time.perf_counter()
        texts = [model.transcribe(audio[a:b], options, lambda segment: None).text.strip() for a, b in plan]
        done = time.perf_counter()
        cpu = time.process_time() - cpu
        gc.collect()
        return DirectRun(planned - started, done - planned, time.perf_counter() - done, cpu, len(plan),
                         " ".join(t for t in texts if t))

    def plan_seconds(self, path: Path, chunk_seconds: int) -> tuple[float, int]:
        """How long the extract stage's chunk planning (Silero VAD over the whole file) takes."""
        audio = decode_audio(path)
        started = time.perf_counter()
        plan = plan_chunks(audio, chunk_seconds)
        return time.perf_counter() - started, len(plan)


def _share(model_dir: Path, threads: int, warm_with: Path, paths: list[Path], ready: Any, go: Any,
           spent: Any) -> None:
    direct = Direct(model_dir, threads)
    direct.load("faster-whisper", warm_with)
    ready.put(True)
    go.wait()
    spent.put(sum(direct.run(path).cpu for path in paths))


def run_in_processes(model_dir: Path, paths: list[Path], processes: int, threads: int,
                     warm_with: Path) -> tuple[float, float]:
    """Wall seconds (and the CPU seconds they spent on the work) for ``processes`` direct processes
    of ``threads`` engine threads each to transcribe ``paths`` between them (round robin), models
    loaded and warm before the clock starts: what the machine's cores can do at most with that
    layout, with no service around the engine."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ready, go, spent = context.Queue(), context.Event(), context.Queue()
    workers = [context.Process(target=_share,
                               args=(model_dir, threads, warm_with, paths[n::processes], ready, go, spent))
               for n in range(processes)]
    for worker in workers:
        worker.start()
    waiting = len(workers)
    while waiting:
        try:
            ready.get(timeout=1.0)
            waiting -= 1
        except queue.Empty:
            if any(w.exitcode not in (None, 0) for w in workers):
                for worker in workers:
                    worker.kill()
                raise RuntimeError("a direct process died while loading its model") from None
    started = time.perf_counter()
    go.set()
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"a direct process exited with {worker.exitcode}")
    wall = time.perf_counter() - started
    return wall, sum(spent.get(timeout=5) for _ in workers)
