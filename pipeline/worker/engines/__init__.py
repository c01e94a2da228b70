"""Transcription engines behind one small interface, device choice, and the per-process model cache.

Which engines exist is ``pipeline.engine_registry``'s table; each engine is a module of this
package, imported only when a model of it is first loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.engine_registry import engine_spec
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.worker.engines.base import Engine, EngineKey, SegmentCallback
from pipeline.worker.gpu import GpuMetrics, read_metrics, release_memory

__all__ = ["DeviceChoice", "Engine", "EngineKey", "ModelCache", "SegmentCallback", "build_engine",
           "choose_device", "default_compute_type"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    reason: str


def cuda_available() -> bool:
    try:
        import ctranslate2

        return bool(ctranslate2.get_cuda_device_count() > 0)
    except Exception:  # noqa: BLE001 - a broken CUDA install must mean "no GPU", not a crash
        return False


def choose_device(
    settings: Settings,
    *,
    has_cuda: Callable[[], bool] = cuda_available,
    metrics: Callable[[], list[GpuMetrics]] = read_metrics,
) -> DeviceChoice:
    """CUDA when asked for (or, with DEVICE=auto, present) and not too full; else the CPU."""
    if settings.device == "cpu":
        return DeviceChoice("cpu", "DEVICE=cpu")
    if not has_cuda():
        if settings.device == "cuda":
            log.warning("DEVICE=cuda but no CUDA device is visible; using the CPU")
        return DeviceChoice("cpu", "no CUDA device")
    gpus = metrics()
    if gpus and min(g.memory_fraction for g in gpus) > settings.gpu_memory_threshold:
        return DeviceChoice(
            "cpu",
            f"GPU memory in use above GPU_MEMORY_THRESHOLD ({settings.gpu_memory_threshold:.0%})",
        )
    return DeviceChoice("cuda", "CUDA available")


def default_compute_type(settings: Settings, engine: str, device: str) -> str:
    return settings.compute_type or engine_spec(engine).compute_type(device)


def build_engine(key: EngineKey, settings: Settings) -> Engine:
    spec = engine_spec(key.engine)
    source = spec.resolve(key.model, settings.model_dir)
    engine: Engine = spec.engine_class()(key, source, settings)
    return engine


EngineFactory = Callable[[EngineKey, Settings], Engine]


class ModelCache:
    """Models loaded in this process, kept between jobs.

    Bounded by ``MODEL_CACHE_SIZE`` (least recently used model dropped first); a model unused
    for ``MODEL_IDLE_TIMEOUT`` seconds is dropped on the next lookup or sweep. Each key has its
    own lock so that two threads asking for the same model load it once, while other models
    stay usable.
    """

    def __init__(self, settings: Settings, factory: EngineFactory = build_engine) -> None:
        self._settings = settings
        self._factory = factory
        self._models: OrderedDict[EngineKey, tuple[Engine, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[EngineKey, threading.Lock] = {}

    def key_for(self, options: TranscribeOptions, device: str) -> EngineKey:
        return EngineKey(
            engine=options.engine,
            model=options.model,
            device=device,
            compute_type=default_compute_type(self._settings, options.engine, device),
        )

    def get(self, key: EngineKey) -> Engine:
        self.sweep()
        with self._lock:
            entry = self._models.get(key)
            if entry is not None:
                self._models[key] = (entry[0], time.monotonic())
                self._models.move_to_end(key)
                return entry[0]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._models.get(key)
            if entry is not None:
                return entry[0]
            started = time.monotonic()
            engine = self._factory(key, self._settings)
            log.info("loaded %s %s on %s (%s) in %.2f s", key.engine, key.model, key.device,
                     key.compute_type, time.monotonic() - started)
            dropped = []
            with self._lock:
                self._models[key] = (engine, time.monotonic())
                while len(self._models) > self._settings.model_cache_size:
                    dropped.append(self._models.popitem(last=False)[0])
            for old in dropped:
                log.info("unloaded %s %s (MODEL_CACHE_SIZE reached)", old.engine, old.model)
            if dropped:
                release_memory()
            return engine

    def drop(self, key: EngineKey) -> None:
        with self._lock:
            self._models.pop(key, None)
        release_memory()

    def loaded(self) -> list[EngineKey]:
        with self._lock:
            return list(self._models)

    def sweep(self) -> None:
        """Unload models idle for longer than MODEL_IDLE_TIMEOUT (0 keeps them forever)."""
        timeout = self._settings.model_idle_timeout
        if timeout <= 0:
            return
        now = time.monotonic()
        idle = []
        with self._lock:
            for key, (_, last_used) in list(self._models.items()):
                if now - last_used > timeout:
                    del self._models[key]
                    idle.append(key)
        for key in idle:
            log.info("unloaded %s %s (idle over %d s)", key.engine, key.model, timeout)
        if idle:
            release_memory()
