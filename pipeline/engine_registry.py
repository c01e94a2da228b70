"""The engines this service offers: one line each.

This module imports nothing heavy, so that the web process can validate an ``engine`` option
and list the engines without importing any of them (torch, faster_whisper and whisper load
only in a transcribe worker). An engine's class and its model-name resolver are named as
``module:attribute`` strings and imported on first use.

Adding an engine: write its module (a class taking ``(key, source, settings)`` with a
``transcribe`` method, see ``pipeline.worker.engines.base``) and add one ``EngineSpec`` line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ModelNotFound

# Resolves a model name (or local path) to what the engine's loader is given.
Resolver = Callable[[str, Path], str]


@dataclass(frozen=True)
class EngineSpec:
    name: str
    engine: str  # "module:Class" of the engine
    resolver: str  # "module:function", a Resolver
    cpu_compute_type: str  # the engine's best default on the CPU
    gpu_compute_type: str = "float16"

    def engine_class(self) -> Any:
        return _load(self.engine)

    def resolve(self, model: str, model_dir: Path) -> str:
        resolver: Resolver = _load(self.resolver)
        return resolver(model, model_dir)

    def compute_type(self, device: str) -> str:
        return self.gpu_compute_type if device == "cuda" else self.cpu_compute_type


ENGINE_SPECS: tuple[EngineSpec, ...] = (
    EngineSpec("faster-whisper", "pipeline.worker.engines.faster:FasterWhisperEngine",
               "pipeline.worker.weights.resolve:resolve_ctranslate2", cpu_compute_type="int8"),
    # PyTorch has no int8 kernels for Whisper on the CPU.
    EngineSpec("openai-whisper", "pipeline.worker.engines.openai_whisper:OpenAIWhisperEngine",
               "pipeline.worker.weights.resolve:resolve_openai", cpu_compute_type="float32"),
)

ENGINES: dict[str, EngineSpec] = {spec.name: spec for spec in ENGINE_SPECS}
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)


def engine_spec(name: str) -> EngineSpec:
    try:
        return ENGINES[name]
    except KeyError:
        raise ModelNotFound(
            f"Unknown engine {name!r}; use one of {', '.join(ENGINE_NAMES)}.") from None


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
