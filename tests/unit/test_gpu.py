"""pipeline/worker/gpu.py: GPU metrics read through NVML (here a stand-in module: no GPU is needed),
NVML's absence remembered, out-of-memory recognised, and CUDA's cache emptied only where torch used it."""

from __future__ import annotations

import logging
import sys
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from pipeline.worker import gpu
from pipeline.worker.gpu import GpuMetrics, is_out_of_memory, read_metrics, release_memory


class NVMLError(Exception):
    pass


class FakeNvml(ModuleType):
    """pynvml's calls that read_metrics makes, over a list of devices (dicts); a device value that
    is an NVMLError is raised when read."""

    NVML_TEMPERATURE_GPU = 0
    NVMLError = NVMLError

    def __init__(self, devices: list[dict[str, Any]], count_error: bool = False) -> None:
        super().__init__("pynvml")
        self.devices, self.count_error, self.inits = devices, count_error, 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        device = self.devices[index]
        if isinstance(device.get("handle"), NVMLError):
            raise device["handle"]
        return device

    def _read(self, handle: dict[str, Any], name: str) -> Any:
        if isinstance(handle[name], NVMLError):
            raise handle[name]
        return handle[name]

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> Any:
        return SimpleNamespace(total=handle["total"], used=handle["used"])

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> Any:
        return SimpleNamespace(gpu=self._read(handle, "util"))

    def nvmlDeviceGetTemperature(self, handle: dict[str, Any], sensor: int) -> int:
        return int(self._read(handle, "temp"))

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> Any:
        return handle["name"]


def _device(name: Any = "NVIDIA H200", util: Any = 50, temp: Any = 61, **more: Any) -> dict[str, Any]:
    return {"name": name, "total": 1000, "used": 250, "util": util, "temp": temp, **more}


def test_the_memory_fraction_is_zero_for_a_device_reporting_no_memory() -> None:
    empty = GpuMetrics(index=0, name="x", memory_total=0, memory_used=0, utilization=None, temperature=None)
    assert empty.memory_fraction == 0.0
    third = GpuMetrics(index=1, name="y", memory_total=3, memory_used=1, utilization=9, temperature=40)
    assert third.to_dict() == {"index": 1, "name": "y", "memory_total": 3, "memory_used": 1, "utilization": 9,
                               "temperature": 40, "memory_fraction": 0.3333}


def test_each_device_is_read_names_decoded_and_unreadable_sensors_none(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml([_device(name=b"Tesla T4"), _device(util=NVMLError("n/a"), temp=NVMLError("n/a"))])
    monkeypatch.setattr(gpu, "_nvml", lambda: nvml)
    assert read_metrics() == [
        GpuMetrics(index=0, name="Tesla T4", memory_total=1000, memory_used=250, utilization=50, temperature=61),
        GpuMetrics(index=1, name="NVIDIA H200", memory_total=1000, memory_used=250, utilization=None,
                   temperature=None),
    ]


def test_a_device_that_fails_keeps_those_read_before_it(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml([_device(), _device(handle=NVMLError("GPU is lost")), _device()])
    monkeypatch.setattr(gpu, "_nvml", lambda: nvml)
    with caplog.at_level(logging.WARNING, logger="pipeline.worker.gpu"):
        assert [m.index for m in read_metrics()] == [0]
    assert "reading GPU metrics failed: GPU is lost" in caplog.text


def test_nvml_is_started_once_and_its_absence_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    working = FakeNvml([])
    monkeypatch.setitem(sys.modules, "pynvml", working)
    monkeypatch.setattr(gpu, "_nvml_ready", None)
    assert gpu._nvml() is working and gpu._nvml() is working and working.inits == 1

    class NoDriver(FakeNvml):
        def nvmlInit(self) -> None:
            raise NVMLError("Driver Not Loaded")

    monkeypatch.setitem(sys.modules, "pynvml", NoDriver([]))
    monkeypatch.setattr(gpu, "_nvml_ready", None)
    assert gpu._nvml() is None and read_metrics() == []
    # Not tried again, even once a library that would start is there: no GPU is a steady state.
    monkeypatch.setitem(sys.modules, "pynvml", working)
    assert gpu._nvml() is None and working.inits == 1


def test_out_of_memory_is_known_by_torchs_class_name_or_a_runtime_errors_words() -> None:
    assert is_out_of_memory(type("OutOfMemoryError", (Exception,), {})("anything"))
    assert is_out_of_memory(type("CudaError", (RuntimeError,), {})("CUDA OUT OF MEMORY"))
    assert not is_out_of_memory(MemoryError("out of memory"))  # the host's RAM, not the GPU's


class FakeCuda:
    def __init__(self, available: bool, initialized: bool, fails: bool = False) -> None:
        self.available, self.initialized, self.fails, self.emptied = available, initialized, fails, 0

    def is_available(self) -> bool:
        return self.available

    def is_initialized(self) -> bool:
        return self.initialized

    def empty_cache(self) -> None:
        if self.fails:
            raise RuntimeError("CUDA error: an illegal memory access")
        self.emptied += 1


@pytest.mark.parametrize(("available", "initialized", "emptied"),
                         [(True, True, 1), (True, False, 0), (False, False, 0)])
def test_the_cuda_cache_is_emptied_only_where_torch_used_cuda(monkeypatch: pytest.MonkeyPatch, available: bool,
                                                             initialized: bool, emptied: int) -> None:
    cuda = FakeCuda(available, initialized)
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    release_memory()
    assert cuda.emptied == emptied


def test_a_failure_to_empty_the_cache_is_only_logged(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=FakeCuda(True, True, fails=True)))
    with caplog.at_level(logging.WARNING, logger="pipeline.worker.gpu"):
        release_memory()
    assert "emptying the CUDA cache failed: CUDA error: an illegal memory access" in caplog.text


def test_releasing_memory_never_imports_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    release_memory()
    assert "torch" not in sys.modules
