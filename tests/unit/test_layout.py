"""pipeline/worker/layout.py and pipeline/worker/transcriber.py: the transcriber's processes and threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import SettingsError
from pipeline.settings import Settings
from pipeline.worker import layout, transcriber
from tests.support.helpers import ROOT


def no_gpu() -> int:
    return 0


def two_gpus() -> int:
    return 2


@pytest.mark.parametrize(("cores", "processes", "threads"), [(1, 1, 1), (2, 2, 1), (4, 4, 1), (8, 8, 1),
                                                             (16, 8, 2), (64, 8, 8)])
def test_auto_on_the_cpu_fills_the_cores_with_one_thread_processes(cores: int, processes: int,
                                                                   threads: int) -> None:
    got = layout.resolve(0, 0, device="auto", cores=cores, gpus=no_gpu)
    assert (got.processes, got.threads, got.device) == (processes, threads, "cpu")
    assert got.processes * got.threads <= cores


def test_a_set_value_is_kept_and_the_other_fills_the_cores() -> None:
    assert layout.resolve(1, 0, device="cpu", cores=2).threads == 2
    assert layout.resolve(0, 2, device="cpu", cores=2).processes == 1
    assert layout.resolve(0, 3, device="cpu", cores=12).processes == 4
    both = layout.resolve(3, 5, device="cpu", cores=2)
    assert (both.processes, both.threads) == (3, 5)
    assert "as set" in both.reason


def test_cuda_gets_one_process_per_gpu() -> None:
    got = layout.resolve(0, 0, device="auto", cores=16, gpus=two_gpus)
    assert (got.processes, got.threads, got.device, got.gpus) == (2, 4, "cuda", 2)
    assert layout.resolve(0, 0, device="auto", cores=2, gpus=two_gpus).threads == 1


def test_device_cpu_never_asks_for_gpus_and_missing_cuda_falls_back() -> None:
    def must_not_be_called() -> int:
        raise AssertionError("DEVICE=cpu must not look for GPUs")

    assert layout.resolve(0, 0, device="cpu", cores=2, gpus=must_not_be_called).device == "cpu"
    assert layout.resolve(0, 0, device="cuda", cores=2, gpus=no_gpu).processes == 2


@pytest.mark.parametrize(("env", "expected"), [
    ({}, (2, 1)),
    ({"TRANSCRIBER_PROCESSES": "auto", "CPU_THREADS": "AUTO"}, (2, 1)),
    ({"TRANSCRIBER_PROCESSES": "0", "CPU_THREADS": "0"}, (2, 1)),
    ({"TRANSCRIBER_PROCESSES": "3", "CPU_THREADS": "2"}, (3, 2)),
    ({"TRANSCRIBER_PROCESSES": " 1 "}, (1, 2)),
])
def test_from_env_parses_auto_and_numbers(env: dict[str, str], expected: tuple[int, int]) -> None:
    got = layout.from_env({"DEVICE": "cpu", **env}, cores=2)
    assert (got.processes, got.threads) == expected


@pytest.mark.parametrize(("name", "value"), [("TRANSCRIBER_PROCESSES", "many"), ("CPU_THREADS", "-1"),
                                             ("TRANSCRIBER_PROCESSES", "1.5"), ("CPU_THREADS", "autox"),
                                             ("BATCH_SIZE", "big"), ("SPLIT_MIN_SECONDS", "-3")])
def test_a_bad_value_is_a_settings_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
    if name in ("TRANSCRIBER_PROCESSES", "CPU_THREADS"):
        with pytest.raises(SettingsError, match=name):
            layout.from_env({"DEVICE": "cpu", name: value}, cores=2)


def test_usable_cores_follows_a_cgroup_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert layout.usable_cores(quota) == affinity
    quota.write_text("50000 100000\n")  # half a core still runs one process
    assert layout.usable_cores(quota) == 1
    assert layout.usable_cores(tmp_path / "absent") == affinity


def test_engine_threads_takes_a_number_as_it_is_and_resolves_auto() -> None:
    assert layout.engine_threads(3) == 3
    cores = layout.usable_cores()
    assert layout.engine_threads(0, "cpu", 1) == cores
    assert layout.engine_threads(0, "cpu", 0) == layout.resolve(0, 0, device="cpu").threads


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("TRANSCRIBER_PROCESSES", "CPU_THREADS")}
    return subprocess.run([sys.executable, "-m", "pipeline.worker.layout", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**clean, "DEVICE": "cpu", **env}, timeout=60)


def test_cli_prints_one_number_for_the_procfile() -> None:
    done = run_cli("processes", TRANSCRIBER_PROCESSES="3")
    assert (done.returncode, done.stdout) == (0, "3\n")
    done = run_cli("threads", TRANSCRIBER_PROCESSES="1")
    assert done.stdout.strip() == str(layout.usable_cores())
    done = run_cli()
    assert done.returncode == 0 and done.stdout.startswith(f"processes={layout.usable_cores()} threads=1 ")


def test_cli_refuses_a_bad_value_naming_it() -> None:
    done = run_cli("processes", CPU_THREADS="lots")
    assert done.returncode == 2
    assert "CPU_THREADS" in done.stderr and done.stdout == ""


def test_launcher_exports_the_resolved_threads_and_one_message_at_a_time() -> None:
    resolved = layout.resolve(0, 0, device="cpu", cores=2)
    env = transcriber.environment(resolved, {"CPU_THREADS": "auto", "PATH": "/usr/bin"})
    assert env["CPU_THREADS"] == "1" and env["TRANSCRIBER_PROCESSES"] == "2"
    assert env["dramatiq_queue_prefetch"] == "1"
    cmd = transcriber.command(resolved, ["--verbose"])
    assert cmd[1:] == ["pipeline.worker.broker", "pipeline.worker.actors", "--processes", "2", "--threads", "1",
                       "--queues", "transcribe", "--verbose"]
    # Whatever the launcher exports parses back to the same layout in the worker.
    assert Settings.from_env(env).cpu_threads == 1
