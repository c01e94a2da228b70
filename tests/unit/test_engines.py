"""Both engines, every transcription option, the model cache and device choice, in-process."""

from __future__ import annotations

import subprocess
import sys

from pipeline.engine_registry import ENGINE_NAMES
from pipeline.worker.gpu import is_out_of_memory, read_metrics
from tests.support.helpers import ROOT


def test_engine_names_come_without_importing_an_engine() -> None:
    """The web process validates and lists engines from the registry; none of them loads."""
    code = (
        "import sys\n"
        "from pipeline.engine_registry import ENGINE_NAMES\n"
        "from pipeline.options import TranscribeOptions\n"
        "from pipeline.settings import Settings\n"
        "TranscribeOptions.parse({'engine': 'openai-whisper'}, Settings())\n"
        "heavy = {'pipeline.worker.engines', 'torch', 'faster_whisper', 'whisper', 'ctranslate2'}\n"
        "print(sorted(heavy & set(sys.modules)), len(ENGINE_NAMES))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == f"[] {len(ENGINE_NAMES)}"


def test_gpu_metrics_answer_cleanly_without_a_gpu() -> None:
    assert read_metrics() == []


def test_out_of_memory_is_recognised() -> None:
    assert is_out_of_memory(RuntimeError("CUDA failed with error out of memory"))
    oom = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate")
    assert is_out_of_memory(oom)
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))
