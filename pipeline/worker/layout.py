"""How many transcriber processes, and engine threads in each, this machine should run.

``TRANSCRIBER_PROCESSES`` and ``CPU_THREADS`` are each a whole number or ``auto`` (the default;
``0`` means the same). ``auto`` is resolved from the cores this process may use (its CPU
affinity and, in a container, the cgroup's CPU quota) and the device:

- on the CPU, one process per core with one engine thread each, up to
  ``MAX_AUTO_PROCESSES`` processes (each holds its own copy of the model), the cores then
  shared out as threads. On 2 cores, 2 processes x 1 thread moved 1.64x the audio of one
  process x 2 threads (docs/benchmarks.md): CTranslate2 gains far less from a second thread
  than from a second process. A single job then runs on one core, which is why a recording
  is split across idle transcribers (``pipeline.worker.split``);
- on CUDA, one process per GPU: the GPU does the work, and two processes on one GPU only
  compete for its memory. Each process gets a few threads for the work left on the CPU.

An explicit number always wins; when only one of the two is given, the other fills the cores
around it.

``python -m pipeline.worker.layout`` prints the resolved layout (``processes`` or ``threads`` alone
print one number, for a shell); ``python -m pipeline.worker.transcriber`` starts the transcriber with it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import SettingsError
from pipeline.settings import Settings

log = logging.getLogger(__name__)

MAX_AUTO_PROCESSES = 8  # beyond this, threads: memory grows with processes, not with threads
CUDA_THREADS = 4  # CPU threads per GPU process: feature extraction and decoding glue only
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class Layout:
    processes: int
    threads: int  # engine threads per process (CPU_THREADS)
    device: str  # cpu or cuda
    cores: int
    gpus: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may run on: its affinity, lowered to a container's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota: the affinity is the limit
    return max(1, cores)


def cuda_device_count() -> int:
    """GPUs CTranslate2 can use; 0 where it cannot load CUDA at all."""
    from pipeline.worker.cuda_libs import preload

    preload()
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # noqa: BLE001 - a broken CUDA install means "no GPU", not a crash
        return 0


def resolve(
    processes: int,
    threads: int,
    *,
    device: str = "auto",
    cores: int | None = None,
    gpus: Callable[[], int] = cuda_device_count,
) -> Layout:
    """The layout for ``processes`` and ``threads`` (0: auto) on ``device`` (auto, cpu, cuda)."""
    cores = cores if cores is not None else usable_cores()
    count = 0 if device == "cpu" else gpus()
    on_cuda = count > 0
    if device == "cuda" and not on_cuda:
        log.warning("DEVICE=cuda but no CUDA device is visible; sizing the transcriber for the CPU")
    if on_cuda:
        auto_processes = count
        auto_threads = max(1, min(CUDA_THREADS, cores // max(processes or count, 1)))
        why = f"{count} GPU(s): one process each"
    else:
        if threads:
            auto_processes = max(1, min(MAX_AUTO_PROCESSES, cores // threads))
        else:
            auto_processes = min(cores, MAX_AUTO_PROCESSES)
        auto_threads = max(1, cores // max(processes or auto_processes, 1))
        why = f"{cores} core(s) on the CPU: processes x threads fill them"
    chosen_processes = processes or auto_processes
    chosen_threads = threads or auto_threads
    if processes and threads:
        why = "TRANSCRIBER_PROCESSES and CPU_THREADS as set"
    elif processes or threads:
        why += " around the value set"
    return Layout(processes=chosen_processes, threads=chosen_threads,
                  device="cuda" if on_cuda else "cpu", cores=cores, gpus=count, reason=why)


def from_env(environ: Mapping[str, str] | None = None, **kwargs: Any) -> Layout:
    """The layout the environment asks for (``TRANSCRIBER_PROCESSES``, ``CPU_THREADS``, ``DEVICE``);
    a bad value is the ``SettingsError`` that names it."""
    settings = Settings.from_env(environ)
    return resolve(settings.transcriber_processes, settings.cpu_threads, device=settings.device, **kwargs)


def engine_threads(cpu_threads: int, device: str = "cpu", transcriber_processes: int = 0) -> int:
    """What an engine in this process should be given as its thread count.

    The launcher (``python -m pipeline.worker.transcriber``) exports the resolved ``CPU_THREADS``, so
    its workers see a number; a process started otherwise with ``auto`` resolves it here as if
    it were one of ``transcriber_processes`` (auto: the resolved count) on the machine."""
    if cpu_threads > 0:
        return cpu_threads
    return resolve(transcriber_processes, 0, device="cpu" if device == "cpu" else "auto").threads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.worker.layout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("field", nargs="?", choices=("processes", "threads", "device"),
                        help="print only this one value")
    parser.add_argument("--json", action="store_true", help="the whole layout as JSON")
    args = parser.parse_args(argv)
    try:
        layout = from_env()
    except SettingsError as exc:
        sys.stderr.write(f"{exc.message}\n")
        return 2
    if args.field:
        sys.stdout.write(f"{getattr(layout, args.field)}\n")
    elif args.json:
        sys.stdout.write(json.dumps(layout.to_dict()) + "\n")
    else:
        sys.stdout.write(f"processes={layout.processes} threads={layout.threads} device={layout.device} "
                         f"cores={layout.cores} gpus={layout.gpus} ({layout.reason})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
