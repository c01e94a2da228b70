"""pipeline/worker/cuda_libs.py: which NVIDIA pip package folders hold CUDA libraries, the
LD_LIBRARY_PATH made from them, and the preload's order, failures and once-only memory (over
empty stand-in files, with the loader itself replaced: nothing real is loaded)."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import pytest

from pipeline.worker import cuda_libs


def _package(root: Path, package: str, *names: str) -> Path:
    lib = root / "nvidia" / package / "lib"
    lib.mkdir(parents=True)
    for name in names:
        (lib / name).write_bytes(b"")
    return lib


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site-packages of the test's own, the only one looked in."""
    monkeypatch.setattr(cuda_libs, "_site_dirs", lambda: [tmp_path])
    return tmp_path


def test_site_folders_are_existing_ones_each_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(tmp_path), str(tmp_path / "absent"), ""])
    found = cuda_libs._site_dirs()
    assert found.count(tmp_path) == 1 and tmp_path / "absent" not in found
    assert all(d.is_dir() for d in found)


def test_only_package_folders_holding_a_cuda_library_are_found(site: Path) -> None:
    cublas = _package(site, "cublas", "libcublas.so.12", "libcublasLt.so.12")
    nested = site / "nvidia" / "cu13" / "cudnn" / "lib"  # the CUDA 13 packages' layout
    nested.mkdir(parents=True)
    (nested / "libcudnn.so.9").write_bytes(b"")
    _package(site, "nccl", "libnccl.so.2")  # not a libcu* library
    (site / "nvidia" / "empty" / "lib").mkdir(parents=True)
    assert cuda_libs.library_dirs() == [cublas, nested]


def test_no_nvidia_packages_leave_the_library_path_as_it_was(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cuda_libs.library_dirs() == []
    assert cuda_libs.library_path("/opt/a::/opt/b") == os.pathsep.join(["/opt/a", "/opt/b"])
    assert cuda_libs.library_path("") == ""
    monkeypatch.setenv("LD_LIBRARY_PATH", "/from/the/environment")
    assert cuda_libs.library_path() == "/from/the/environment"


def test_package_folders_come_first_and_are_not_repeated(site: Path) -> None:
    cublas = _package(site, "cublas", "libcublas.so.12")
    cudnn = _package(site, "cudnn", "libcudnn.so.9")
    got = cuda_libs.library_path(os.pathsep.join(["/opt/other", str(cudnn)])).split(os.pathsep)
    assert got == [str(cublas), str(cudnn), "/opt/other"]


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the preload asks the dynamic loader to open, in order; a name with "broken" fails."""
    opened: list[str] = []

    def cdll(path: str, mode: int = 0) -> object:
        assert mode == ctypes.RTLD_GLOBAL  # later lookups by name must find them
        if "broken" in path:
            raise OSError(f"{path}: needs a newer driver")
        opened.append(Path(path).name)
        return object()

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.setattr(cuda_libs, "_done", None)
    return opened


def test_preload_opens_each_family_after_the_ones_it_needs(site: Path, loader: list[str]) -> None:
    # The CUDA 13 packages' layout: every library in one folder, listed here out of order.
    _package(site, "cu13", "libcudnn_ops.so.9", "libcudnn.so.9", "libcudnn_broken.so.9", "libcublas.so.13",
             "libcublasLt.so.13", "libnvblas.so.13", "libnvJitLink.so.13", "libnvrtc.so.13", "libcudart.so.13")
    loaded = cuda_libs.preload()
    assert loader == ["libcudart.so.13", "libnvrtc.so.13", "libnvJitLink.so.13", "libcublasLt.so.13",
                      "libcublas.so.13", "libcudnn.so.9", "libcudnn_ops.so.9"]
    # The one that failed is left out; a library of no listed family (libnvblas) is never opened.
    assert [p.name for p in loaded] == loader


def test_preload_runs_once_per_process(site: Path, loader: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _package(site, "cublas", "libcublas.so.12")
    first = cuda_libs.preload()
    monkeypatch.setattr(cuda_libs, "library_dirs", lambda: pytest.fail("looked for the libraries again"))
    assert cuda_libs.preload() is first and loader == ["libcublas.so.12"]


def test_a_host_without_the_packages_preloads_nothing(site: Path, loader: list[str]) -> None:
    assert cuda_libs.preload() == [] and loader == []
