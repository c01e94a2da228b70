"""Transcription engines behind one small interface, and the per-process model cache."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.errors import ModelNotFound, TranscriptionError
from pipeline.media import SAMPLE_RATE
from pipeline.models import resolve_ctranslate2
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Segment, Transcript, Word

log = logging.getLogger(__name__)

# Called once per decoded segment; raising from it (for example on cancellation) stops decoding.
SegmentCallback = Callable[[Segment], None]


class Engine(Protocol):
    name: str
    model_name: str
    device: str

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, on_segment: SegmentCallback
    ) -> Transcript: ...


@dataclass(frozen=True)
class EngineKey:
    engine: str
    model: str
    device: str
    compute_type: str


def cuda_available() -> bool:
    try:
        import ctranslate2

        return bool(ctranslate2.get_cuda_device_count() > 0)
    except Exception:  # noqa: BLE001 - a broken CUDA install must mean "no GPU", not a crash
        return False


def choose_device(settings: Settings) -> str:
    if settings.device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return settings.device


def choose_compute_type(settings: Settings, device: str) -> str:
    if settings.compute_type:
        return settings.compute_type
    return "float16" if device == "cuda" else "int8"


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(self, model_name: str, device: str, compute_type: str, cpu_threads: int = 0) -> None:
        from faster_whisper import WhisperModel

        self.model_name = model_name
        self.device = device
        source = resolve_ctranslate2(model_name)
        try:
            self._model = WhisperModel(
                source, device=device, compute_type=compute_type, cpu_threads=cpu_threads
            )
        except (OSError, ValueError, RuntimeError) as exc:
            # Offline, an unknown name fails inside the hub client; say what the user can do.
            raise ModelNotFound(
                f"Model {model_name!r} could not be loaded ({exc.__class__.__name__}). "
                "Use tiny.en or a local model folder, or allow this host to reach the model hub."
            ) from exc

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, on_segment: SegmentCallback
    ) -> Transcript:
        try:
            segments_iter, info = self._model.transcribe(
                audio,
                language=options.language,
                task=options.task,
                beam_size=options.beam_size,
                temperature=options.temperature,
                word_timestamps=options.word_timestamps,
                vad_filter=options.vad_filter,
                initial_prompt=options.initial_prompt,
            )
        except ValueError as exc:
            raise TranscriptionError(str(exc)) from exc
        segments: list[Segment] = []
        # The generator decodes lazily: each step is one 30-second window's worth of work.
        for raw in segments_iter:
            words = None
            if raw.words is not None:
                words = tuple(
                    Word(start=w.start, end=w.end, word=w.word, probability=w.probability)
                    for w in raw.words
                )
            segment = Segment(
                id=len(segments),
                start=round(raw.start, 3),
                end=round(raw.end, 3),
                text=raw.text,
                tokens=tuple(raw.tokens),
                temperature=raw.temperature or 0.0,
                avg_logprob=raw.avg_logprob,
                compression_ratio=raw.compression_ratio,
                no_speech_prob=raw.no_speech_prob,
                words=words,
            )
            segments.append(segment)
            on_segment(segment)
        return Transcript(
            text="".join(s.text for s in segments).strip(),
            language=info.language,
            language_probability=info.language_probability,
            duration=round(len(audio) / SAMPLE_RATE, 3),
            segments=tuple(segments),
            task=options.task,
            engine=self.name,
            model=self.model_name,
            device=self.device,
        )


EngineFactory = Callable[[EngineKey, Settings], Engine]


def _build_engine(key: EngineKey, settings: Settings) -> Engine:
    if key.engine == "faster-whisper":
        return FasterWhisperEngine(key.model, key.device, key.compute_type, settings.cpu_threads)
    raise ModelNotFound(f"Engine {key.engine!r} is not available in this worker.")


class ModelCache:
    """Models loaded in this process, kept between jobs.

    Bounded by ``MODEL_CACHE_SIZE`` (least recently used model dropped first); a model unused
    for ``MODEL_IDLE_TIMEOUT`` seconds is dropped on the next lookup. Each key has its own
    lock so that two threads asking for the same model load it once, while other models stay
    usable.
    """

    def __init__(self, settings: Settings, factory: EngineFactory = _build_engine) -> None:
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
            compute_type=choose_compute_type(self._settings, device),
        )

    def get(self, key: EngineKey) -> Engine:
        self._drop_idle()
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
            log.info("loaded %s %s on %s in %.2f s", key.engine, key.model, key.device,
                     time.monotonic() - started)
            with self._lock:
                self._models[key] = (engine, time.monotonic())
                while len(self._models) > self._settings.model_cache_size:
                    dropped, _ = self._models.popitem(last=False)
                    log.info("unloaded %s %s (cache full)", dropped.engine, dropped.model)
            return engine

    def loaded(self) -> list[EngineKey]:
        with self._lock:
            return list(self._models)

    def _drop_idle(self) -> None:
        timeout = self._settings.model_idle_timeout
        if timeout <= 0:
            return
        now = time.monotonic()
        with self._lock:
            for key, (_, last_used) in list(self._models.items()):
                if now - last_used > timeout:
                    del self._models[key]
                    log.info("unloaded %s %s (idle %.0f s)", key.engine, key.model, now - last_used)
