"""Make the CUDA libraries that CTranslate2 needs loadable without a CUDA runtime image.

CTranslate2's wheels link against cuBLAS 12 and cuDNN 9 but do not ship them. A host with
PyTorch's CUDA build already has them as pip packages (``nvidia-cublas-cu12``,
``nvidia-cudnn-cu12``, and their CUDA 13 successors), in ``site-packages/nvidia/*/lib``, a
place the dynamic loader never looks. Two ways in, used by the transcriber and by
``make gpu-check`` alike:

- ``library_path()`` for a process about to start another (``python -m pipeline.worker.transcriber``
  exports it as ``LD_LIBRARY_PATH`` before it execs Dramatiq; the loader reads that variable
  only when a process starts);
- ``preload()`` inside a running process, before ctranslate2 first loads CUDA: the libraries
  are opened by full path with ``RTLD_GLOBAL``, so that later lookups by name find them
  already loaded.

``python -m pipeline.worker.cuda_libs`` prints the folders as one ``LD_LIBRARY_PATH`` value.
"""

from __future__ import annotations

import ctypes
import logging
import os
import site
import sys
import sysconfig
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# Loaded in this order: each needs the ones before it (cuBLASLt before cuBLAS, the cuDNN
# front library before the engines it opens by name).
LIBRARY_PREFIXES = ("libcudart.so", "libnvrtc.so", "libnvJitLink.so", "libcublasLt.so", "libcublas.so",
                    "libcudnn.so", "libcudnn_")
_lock = threading.Lock()
_done: list[Path] | None = None


def _site_dirs() -> list[Path]:
    found: list[Path] = []
    candidates = [sysconfig.get_paths().get("purelib"), sysconfig.get_paths().get("platlib"),
                  *getattr(site, "getsitepackages", list)(), *sys.path]
    for entry in candidates:
        if entry and Path(entry).is_dir() and Path(entry) not in found:
            found.append(Path(entry))
    return found


def library_dirs() -> list[Path]:
    """The ``nvidia/*/lib`` folders of the NVIDIA pip packages that hold cuBLAS or cuDNN."""
    dirs: list[Path] = []
    for root in _site_dirs():
        nvidia = root / "nvidia"
        if not nvidia.is_dir():
            continue
        for lib in sorted(nvidia.glob("*/lib")) + sorted(nvidia.glob("*/*/lib")):
            if lib not in dirs and any(lib.glob("libcu*.so*")):
                dirs.append(lib)
    return dirs


def library_path(existing: str | None = None) -> str:
    """``LD_LIBRARY_PATH`` with the NVIDIA package folders in front of ``existing``."""
    current = os.environ.get("LD_LIBRARY_PATH", "") if existing is None else existing
    parts = [str(d) for d in library_dirs()]
    parts += [p for p in current.split(os.pathsep) if p and p not in parts]
    return os.pathsep.join(parts)


def preload() -> list[Path]:
    """Open the NVIDIA packages' cuBLAS/cuDNN libraries in this process, once; returns what was
    loaded (nothing on a host without those packages, which is not an error)."""
    global _done
    with _lock:
        if _done is not None:
            return _done
        loaded: list[Path] = []
        files = [f for d in library_dirs() for f in sorted(d.glob("lib*.so*")) if f.is_file()]
        for prefix in LIBRARY_PREFIXES:
            for path in files:
                if not path.name.startswith(prefix) or path in loaded:
                    continue
                try:
                    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                    loaded.append(path)
                except OSError as exc:
                    # One library of a family may need a driver feature this host lacks; the rest
                    # can still serve, and ctranslate2 reports what it really misses.
                    log.debug("could not preload %s: %s", path, exc)
        if loaded:
            log.info("preloaded %d CUDA libraries from %s", len(loaded),
                     ", ".join(sorted({str(p.parent) for p in loaded})))
        _done = loaded
        return loaded


if __name__ == "__main__":
    sys.stdout.write(library_path() + "\n")
