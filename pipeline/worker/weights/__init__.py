"""Whisper weights on disk, offline: the packaged models, checked, and both engines' formats.

The service's machines reach package registries but no model hub, and the only Whisper weights
that arrive through a registry are CTranslate2 models (the format faster-whisper loads), so:

* ``packaged`` finds the models that pip packages ship, checks each file's sha256 and
  reassembles ``base`` from its two halves;
* ``ctranslate2`` reads CTranslate2's ``model.bin`` with numpy;
* ``convert`` rewrites it as an openai-whisper checkpoint, and loads one;
* ``resolve`` turns a request's model name into what each engine loads;
* ``integrity`` and ``files`` are their helpers (hashing once per file, atomic writes).

Nothing heavy is imported here: torch and whisper are imported by the functions that need them.
"""

from __future__ import annotations

from pipeline.worker.weights.convert import (
    alignment_heads_dump,
    ctranslate2_dimensions,
    ctranslate2_to_openai_checkpoint,
    load_openai_model,
)
from pipeline.worker.weights.ctranslate2 import (
    SUPPORTED_BINARY_VERSION,
    CTranslate2File,
    dequantize,
    read_ctranslate2_file,
    read_ctranslate2_model,
)
from pipeline.worker.weights.packaged import PACKAGED_MODELS, openai_checkpoint, packaged_ctranslate2_dir
from pipeline.worker.weights.resolve import resolve_ctranslate2, resolve_openai

__all__ = [
    "PACKAGED_MODELS",
    "SUPPORTED_BINARY_VERSION",
    "CTranslate2File",
    "alignment_heads_dump",
    "ctranslate2_dimensions",
    "ctranslate2_to_openai_checkpoint",
    "dequantize",
    "load_openai_model",
    "openai_checkpoint",
    "packaged_ctranslate2_dir",
    "read_ctranslate2_file",
    "read_ctranslate2_model",
    "resolve_ctranslate2",
    "resolve_openai",
]
