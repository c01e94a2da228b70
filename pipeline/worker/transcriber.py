"""``python -m pipeline.worker.transcriber``: start the transcribe worker with the machine's layout.

Resolves ``TRANSCRIBER_PROCESSES`` and ``CPU_THREADS`` (``pipeline.worker.layout``), puts the NVIDIA
pip packages' CUDA libraries on ``LD_LIBRARY_PATH`` (``pipeline.worker.cuda_libs``), and replaces
itself with::

    dramatiq pipeline.worker.broker pipeline.worker.actors --processes P --threads 1 --queues transcribe

with ``CPU_THREADS=T`` and ``dramatiq_queue_prefetch=1`` in the environment (each process takes
one message at a time, so an idle process never sits beside a busy one holding two). Arguments
after ``--`` are passed on to Dramatiq. With several GPUs it starts one Dramatiq per GPU
instead, each seeing only its own (``CUDA_VISIBLE_DEVICES``), and stops them all when one ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.errors import SettingsError
from pipeline.queues import TRANSCRIBE_QUEUE
from pipeline.worker import cuda_libs, layout

log = logging.getLogger(__name__)


def dramatiq_program() -> list[str]:
    """Dramatiq of this interpreter's environment: the launcher may be started by the
    virtualenv's python by full path, with that environment's ``bin`` not on PATH."""
    beside = Path(sys.executable).parent / "dramatiq"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dramatiq")
    return [found] if found else [sys.executable, "-m", "dramatiq"]


def command(resolved: layout.Layout, extra: Sequence[str] = (), processes: int | None = None) -> list[str]:
    return [*dramatiq_program(), "pipeline.worker.broker", "pipeline.worker.actors", "--processes",
            str(processes or resolved.processes), "--threads", "1", "--queues", TRANSCRIBE_QUEUE, *extra]


def environment(resolved: layout.Layout, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env["CPU_THREADS"] = str(resolved.threads)
    env["TRANSCRIBER_PROCESSES"] = str(resolved.processes)
    env.setdefault("dramatiq_queue_prefetch", "1")
    library_path = cuda_libs.library_path(env.get("LD_LIBRARY_PATH", ""))
    if library_path:
        env["LD_LIBRARY_PATH"] = library_path
    return env


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s transcriber %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    extra = args[args.index("--") + 1:] if "--" in args else args
    try:
        resolved = layout.from_env()
    except SettingsError as exc:
        log.error("%s", exc.message)
        return 2
    env = environment(resolved, os.environ)
    log.info("layout: %d process(es) x %d engine thread(s) on %s (%s)", resolved.processes,
             resolved.threads, resolved.device, resolved.reason)
    if resolved.device != "cuda" or resolved.gpus <= 1 or resolved.processes != resolved.gpus:
        cmd = command(resolved, extra)
        os.execvpe(cmd[0], cmd, env)
    # One Dramatiq per GPU: every process of one Dramatiq would otherwise sit on GPU 0.
    children = [subprocess.Popen(command(resolved, extra, processes=1),
                                 env={**env, "CUDA_VISIBLE_DEVICES": str(index)})
                for index in range(resolved.gpus)]

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    _pid, status = os.wait()
    forward(signal.SIGTERM, None)
    for child in children:
        child.wait()
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
