"""Worker middleware of our own."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import dramatiq
from dramatiq.middleware import Middleware

from pipeline.queues import EXTRACT_QUEUE, LIVE_QUEUE, TRANSCRIBE_QUEUE

log = logging.getLogger(__name__)


def consumed_queues(broker: dramatiq.Broker, worker: dramatiq.Worker) -> set[str]:
    """The queues this worker takes messages from: its ``--queues``, else all declared."""
    return set(getattr(worker, "consumer_whitelist", None) or broker.get_declared_queues())


def _reload_worker() -> None:
    # SIGHUP asks Dramatiq's main process to stop its workers gracefully (each finishes its
    # current message; unacknowledged ones go back to RabbitMQ) and then to start afresh.
    os.kill(os.getppid(), signal.SIGHUP)


class RecycleAfter(Middleware):
    """Restart the worker processes after ``max_tasks`` messages (MAX_TASKS_PER_CHILD), so
    that memory a long-running process gathers (allocator fragmentation, leaks in native
    libraries) is returned; Dramatiq has no such option of its own."""

    def __init__(self, max_tasks: int, recycle: Callable[[], None] = _reload_worker) -> None:
        self.max_tasks = max_tasks
        self.recycle = recycle
        self._done = 0
        self._lock = threading.Lock()
        self._requested = False

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *,
        result: Any = None, exception: BaseException | None = None,
    ) -> None:
        self._count()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._count()

    def _count(self) -> None:
        with self._lock:
            self._done += 1
            due = self._done >= self.max_tasks and not self._requested
            if due:
                self._requested = True
        if due:
            log.info("processed %d messages: recycling the worker processes", self._done)
            self.recycle()


def configure_worker_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Point Dramatiq's Prometheus middleware at ``host:port`` and its folder of per-process
    counters. It reads them into module globals when ``dramatiq.middleware`` is first
    imported, before any setting of ours, and looks them up again when it counts; so they are
    set here, in every process. The port has no authentication: loopback unless
    WORKER_METRICS_BIND widens it (Dramatiq's own default is every interface)."""
    from dramatiq.middleware import prometheus

    prometheus.HTTP_PORT = port
    prometheus.HTTP_HOST = host
    prometheus.DB_PATH = os.environ.get("dramatiq_prom_db") or os.path.join(
        tempfile.gettempdir(), f"dramatiq-prometheus-{port}")
    os.makedirs(prometheus.DB_PATH, exist_ok=True)


def serve_worker_metrics() -> int:
    """The exporter: runs in the process Dramatiq forks for it (which never imports our
    broker) and serves, with prometheus_client's own HTTP server, the counters that every
    worker process of this Dramatiq writes to the shared folder. Dramatiq stops the fork with
    SIGTERM, which ends the wait below."""
    from dramatiq.middleware import prometheus
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from pipeline.settings import Settings

    settings = Settings.from_env()
    configure_worker_metrics(settings.worker_metrics_port, settings.worker_metrics_bind)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=prometheus.DB_PATH)
    server, thread = start_http_server(prometheus.HTTP_PORT, prometheus.HTTP_HOST, registry=registry)
    log.info("worker metrics on %s:%d", prometheus.HTTP_HOST, prometheus.HTTP_PORT)
    try:
        thread.join()
    finally:
        server.shutdown()
    return 0


def worker_metrics(port: int, host: str = "127.0.0.1") -> Middleware:
    from dramatiq.middleware.prometheus import Prometheus

    configure_worker_metrics(port, host)

    class WorkerMetrics(Prometheus):
        """Dramatiq's counters, exported by ``serve_worker_metrics`` instead of its own server."""

        @property
        def forks(self) -> list[Callable[[], Any]]:
            return [serve_worker_metrics]

    return WorkerMetrics()


WARM_UP_SECONDS = 2.0


def warm_up_audio() -> Any:
    """Quiet noise, the same every time: enough for one encoder pass and a short decode."""
    import numpy as np

    rng = np.random.default_rng(0)
    return (0.01 * rng.standard_normal(int(16_000 * WARM_UP_SECONDS))).astype(np.float32)


def load_default_model() -> None:
    """Load ``DEFAULT_ENGINE``/``DEFAULT_MODEL`` into this worker process's model cache, on the
    device a job would get now: the key a default job asks for, so that job finds it loaded.
    Then decode a moment of noise with it: the first decode of a process also pays for its
    kernels' set-up and its buffers, which would otherwise fall on the first job."""
    from pipeline.options import TranscribeOptions
    from pipeline.worker.context import worker_context
    from pipeline.worker.engines import choose_device

    ctx = worker_context()
    options = TranscribeOptions(engine=ctx.settings.default_engine, model=ctx.settings.default_model)
    engine = ctx.models.get(ctx.models.key_for(options, choose_device(ctx.settings).device))
    engine.transcribe(warm_up_audio(), options, lambda segment: None)
    trim_memory()


def load_vad() -> None:
    """Load the speech detector that extract plans chunks with, and run it once, in a process
    that consumes the extract queue: its first use otherwise falls on the first job."""
    from pipeline.worker.chunks import speech_spans

    audio = warm_up_audio()
    speech_spans(lambda start, end: audio[start:end], len(audio))
    trim_memory()


class PreloadModel(Middleware):
    """Loads the default model when a process that consumes the transcribe queue boots, so
    that the first job costs what the next does (loading tiny.en took 1.8 s of a 2.65 s first
    job). It loads in a thread of its own: the worker takes messages at once, and a job that
    arrives meanwhile waits on the model cache's per-model lock rather than loading it twice."""

    def __init__(self, load: Callable[[], None] = load_default_model, queue: str | None = None) -> None:
        self.load = load
        self.queue = queue

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = consumed_queues(broker, worker)
        if (self.queue or TRANSCRIBE_QUEUE) not in queues:
            return
        threading.Thread(target=self._run, name="preload-model", daemon=True).start()

    def _run(self) -> None:
        try:
            self.load()
        except Exception as exc:  # noqa: BLE001 - the first job loads it (and reports why) instead
            log.warning("could not preload the default model: %s", exc)


class PreloadVad(PreloadModel):
    """Its own type: Dramatiq warns about two middlewares of one type."""

    def __init__(self) -> None:
        super().__init__(load_vad, queue=EXTRACT_QUEUE)


def load_live_model() -> None:
    """The default model as live sessions decode with it, and one partial decode of noise."""
    from pipeline.live import LiveConfig
    from pipeline.worker import live
    from pipeline.worker.context import worker_context

    ctx = worker_context()
    config = LiveConfig.default(ctx.settings)
    live.faster_whisper_decoder(lambda name: live.engine_model(ctx, name))(warm_up_audio(), config, False)
    trim_memory()


class PreloadLive(PreloadModel):
    """In a process that consumes the live queue: each of its threads holds one session, so
    the model gets as many copies (``Context.live_decoders``) before it is loaded, here."""

    def __init__(self, load: Callable[[], None] = load_live_model) -> None:
        super().__init__(load, queue=LIVE_QUEUE)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if LIVE_QUEUE in consumed_queues(broker, worker):
            from pipeline.worker.context import worker_context

            worker_context().live_decoders = int(getattr(worker, "worker_threads", 1) or 1)
        super().after_worker_boot(broker, worker)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        function = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: nothing to hand back this way
        return None
    return cast(Callable[[int], int], function)


_TRIM = _malloc_trim()


def trim_memory() -> None:
    """Hand the heap that a message freed back to the system. glibc keeps freed memory in its
    arenas for reuse; after a decode that is tens of MiB per process, held while it idles."""
    if _TRIM is not None:
        _TRIM(0)


class TrimMemory(Middleware):
    """``trim_memory`` after every message (a few milliseconds; see docs/benchmarks.md)."""

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        trim_memory()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        trim_memory()


class RecycleWhenIdle(Middleware):
    """Restarts a process that consumes ``queue`` once it has held what ``loaded`` reports for
    ``idle_seconds`` without a message: the diarizer's torch and models (a quarter of the
    stack's memory) are freed while nobody asks for speakers, and load again with the next job.
    A fresh process never imported them, so it stays small until then."""

    def __init__(self, queue: str, idle_seconds: float, loaded: Callable[[], bool], *,
                 recycle: Callable[[], None] = _reload_worker,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = queue
        self.idle_seconds = idle_seconds
        self.loaded = loaded
        self.recycle = recycle
        self.clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._last = clock()
        self._stop = threading.Event()
        self._recycled = False

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = consumed_queues(broker, worker)
        if self.idle_seconds > 0 and self.queue in queues:
            self.start_watching()

    def start_watching(self) -> None:
        threading.Thread(target=self._watch, name="recycle-when-idle", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._lock:
            self._running += 1

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        self._done()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._done()

    def _done(self) -> None:
        with self._lock:
            self._running = max(0, self._running - 1)
            self._last = self.clock()

    def check(self) -> bool:
        """Recycle now if due; whether it did. The watcher thread calls this every few seconds."""
        with self._lock:
            due = (not self._recycled and self._running == 0
                   and self.clock() - self._last >= self.idle_seconds and self.loaded())
            if due:
                self._recycled = True
        if due:
            log.info("idle for %.0f s with its models loaded: restarting to free them", self.idle_seconds)
            self.recycle()
        return due

    def _watch(self) -> None:
        while not self._stop.wait(min(5.0, self.idle_seconds)):
            if self.check():
                return
