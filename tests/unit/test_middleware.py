"""pipeline/worker/middleware.py: the worker processes' own middleware, on Dramatiq's StubBroker
with an injected clock (no servers)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import dramatiq
import numpy as np
from dramatiq.brokers.stub import StubBroker

from pipeline.worker import middleware
from pipeline.worker.middleware import RecycleWhenIdle, TrimMemory, warm_up_audio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def idle_recycler(loaded: list[bool], recycled: list[bool], clock: Clock, idle: float = 300) -> RecycleWhenIdle:
    return RecycleWhenIdle("diarize", idle, lambda: loaded[0], recycle=lambda: recycled.append(True), clock=clock)


def message() -> Any:
    return SimpleNamespace(message_id="m")


def test_an_idle_diarizer_with_its_models_loaded_restarts_once() -> None:
    clock, loaded, recycled = Clock(), [True], []
    watcher = idle_recycler(loaded, recycled, clock)
    broker = StubBroker()
    watcher.before_process_message(broker, message())
    watcher.after_process_message(broker, message())
    clock.now += 299
    assert not watcher.check() and recycled == []
    clock.now += 1
    assert watcher.check() and recycled == [True]
    clock.now += 600
    assert not watcher.check() and recycled == [True]  # asked once: the restart is under way


def test_it_never_restarts_during_a_job_or_without_models() -> None:
    clock, loaded, recycled = Clock(), [False], []
    watcher = idle_recycler(loaded, recycled, clock)
    broker = StubBroker()
    clock.now += 10_000
    assert not watcher.check()  # a fresh process holds nothing: nothing to free
    loaded[0] = True
    watcher.before_process_message(broker, message())
    clock.now += 10_000
    assert not watcher.check()  # a long diarization is not idleness
    watcher.after_process_message(broker, message())
    assert not watcher.check()  # idle counts from the end of the last job
    clock.now += 300
    assert watcher.check() and recycled == [True]


def test_only_a_process_on_its_queue_watches_and_zero_turns_it_off() -> None:
    started: list[float] = []

    class Recorder(RecycleWhenIdle):
        def start_watching(self) -> None:
            started.append(self.idle_seconds)

    broker = StubBroker()
    for queue in ("diarize", "transcribe"):
        broker.declare_queue(queue)
    on = {"transcribe": SimpleNamespace(consumer_whitelist={"transcribe"}),
          "diarize": SimpleNamespace(consumer_whitelist={"diarize"}), "all": SimpleNamespace()}
    Recorder("diarize", 300, lambda: True).after_worker_boot(broker, on["transcribe"])  # type: ignore[arg-type]
    Recorder("diarize", 0, lambda: True).after_worker_boot(broker, on["diarize"])  # type: ignore[arg-type]
    assert started == []
    Recorder("diarize", 300, lambda: True).after_worker_boot(broker, on["diarize"])  # type: ignore[arg-type]
    Recorder("diarize", 60, lambda: True).after_worker_boot(broker, on["all"])  # type: ignore[arg-type]
    assert started == [300, 60]


def test_memory_is_trimmed_after_each_message(monkeypatch: Any) -> None:
    trims: list[int] = []
    monkeypatch.setattr(middleware, "_TRIM", lambda pad: trims.append(pad) or 1)
    stub = StubBroker(middleware=[TrimMemory()])
    stub.emit_after("process_boot")
    actor = dramatiq.actor(lambda n: None, broker=stub, queue_name="t", actor_name="noop")
    worker = dramatiq.Worker(stub, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        for n in range(3):
            actor.send(n)
        stub.join("t")
        worker.join()
    finally:
        worker.stop()
    assert trims == [0, 0, 0]


def test_trimming_is_safe_to_call_here() -> None:
    middleware.trim_memory()  # glibc's malloc_trim where there is one; nothing elsewhere


def test_the_warm_up_audio_is_quiet_fixed_and_short() -> None:
    first, second = warm_up_audio(), warm_up_audio()
    assert first.dtype == np.float32 and len(first) == 32_000
    assert np.array_equal(first, second) and float(np.abs(first).max()) < 0.1


def test_the_extract_worker_loads_its_speech_detector_at_boot() -> None:
    from faster_whisper.vad import get_vad_model

    get_vad_model.cache_clear()
    middleware.load_vad()
    assert get_vad_model.cache_info().currsize == 1


def test_a_live_worker_gets_a_copy_of_the_model_per_thread_before_loading_it() -> None:
    from pipeline.worker.context import worker_context

    broker = StubBroker()
    broker.declare_queue("live")
    loaded = threading.Event()
    seen: list[int] = []

    def load() -> None:
        seen.append(worker_context().live_decoders)
        loaded.set()

    ctx = worker_context()
    before = ctx.live_decoders
    try:
        middleware.PreloadLive(load).after_worker_boot(
            broker, SimpleNamespace(consumer_whitelist={"extract"}, worker_threads=5))  # type: ignore[arg-type]
        assert ctx.live_decoders == before
        assert not any(t.name == "preload-model" for t in threading.enumerate())
        middleware.PreloadLive(load).after_worker_boot(
            broker, SimpleNamespace(consumer_whitelist={"live"}, worker_threads=3))  # type: ignore[arg-type]
        assert loaded.wait(10) and seen == [3]
    finally:
        ctx.live_decoders = before
