"""GPU facts for device choice, job records and heartbeats, read with pynvml (NVML).

Every function answers cleanly on a machine without a GPU or without the NVIDIA driver: no
GPU is a normal state for this service, not an error.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

_init_lock = threading.Lock()
_nvml_ready: bool | None = None


@dataclass(frozen=True)
class GpuMetrics:
    index: int
    name: str
    memory_total: int
    memory_used: int
    utilization: int | None
    temperature: int | None

    @property
    def memory_fraction(self) -> float:
        return self.memory_used / self.memory_total if self.memory_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "memory_fraction": round(self.memory_fraction, 4)}


def _nvml() -> Any | None:
    global _nvml_ready
    with _init_lock:
        if _nvml_ready is False:
            return None
        try:
            import pynvml

            if not _nvml_ready:
                pynvml.nvmlInit()
                _nvml_ready = True
            return pynvml
        except Exception as exc:  # noqa: BLE001 - no driver, no library: no GPU
            log.debug("NVML unavailable: %s", exc)
            _nvml_ready = False
            return None


def read_metrics() -> list[GpuMetrics]:
    nvml = _nvml()
    if nvml is None:
        return []
    metrics = []
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                utilization: int | None = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:
                utilization = None
            try:
                temperature: int | None = int(
                    nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            except nvml.NVMLError:
                temperature = None
            name = nvml.nvmlDeviceGetName(handle)
            metrics.append(GpuMetrics(
                index=index,
                name=name.decode() if isinstance(name, bytes) else str(name),
                memory_total=int(memory.total),
                memory_used=int(memory.used),
                utilization=utilization,
                temperature=temperature,
            ))
    except nvml.NVMLError as exc:
        log.warning("reading GPU metrics failed: %s", exc)
    return metrics


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA out-of-memory, as torch (OutOfMemoryError) or CTranslate2 (RuntimeError) say it."""
    text = str(exc).lower()
    return exc.__class__.__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and "out of memory" in text)


def release_memory() -> None:
    """After a job or an out-of-memory error: collect garbage and, where torch has used CUDA,
    hand its cached blocks back to the driver so that other processes on the GPU can use them."""
    gc.collect()
    torch = sys.modules.get("torch")  # only if this process imported it: never import it here
    if torch is not None:
        try:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001
            log.warning("emptying the CUDA cache failed: %s", exc)
