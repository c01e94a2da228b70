"""pipeline/worker/transcriber.py: which Dramatiq it starts, the command and environment it gives it,
and ``main``'s choice between a refusal and one Dramatiq (the exec itself is stopped at the door).
The basic command and exported layout are tests/unit/test_layout.py's."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from pipeline.worker import cuda_libs, layout, transcriber

CPU = layout.resolve(2, 1, device="cpu", cores=2)


class Execed(Exception):
    """Raised in place of os.execvpe, carrying what it was given."""

    def __init__(self, program: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(program)
        self.program, self.argv, self.env = program, argv, env


@pytest.fixture
def no_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    def execvpe(program: str, argv: list[str], env: dict[str, str]) -> None:
        raise Execed(program, argv, env)

    monkeypatch.setattr(os, "execvpe", execvpe)
    monkeypatch.setattr(cuda_libs, "library_dirs", list)  # no NVIDIA packages, whatever this host has


def test_the_dramatiq_beside_this_python_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dramatiq").write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(shutil, "which", lambda name: pytest.fail("PATH was searched"))
    assert transcriber.dramatiq_program() == [str(tmp_path / "dramatiq")]


def test_else_the_one_on_path_else_the_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/local/bin/dramatiq" if name == "dramatiq" else None)
    assert transcriber.dramatiq_program() == ["/usr/local/bin/dramatiq"]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert transcriber.dramatiq_program() == [str(tmp_path / "python"), "-m", "dramatiq"]


def test_one_dramatiq_per_gpu_is_given_one_process() -> None:
    cmd = transcriber.command(CPU, ["--verbose"], processes=1)
    assert cmd[cmd.index("--processes") + 1] == "1" and cmd[-1] == "--verbose"
    assert transcriber.command(CPU)[-2:] == ["--queues", "transcribe"]


def test_the_environment_is_a_copy_and_keeps_an_explicit_prefetch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_libs, "library_dirs", list)
    base = {"dramatiq_queue_prefetch": "4", "PATH": "/usr/bin"}
    env = transcriber.environment(CPU, base)
    assert env == {"dramatiq_queue_prefetch": "4", "PATH": "/usr/bin", "CPU_THREADS": "1",
                   "TRANSCRIBER_PROCESSES": "2"}
    assert base == {"dramatiq_queue_prefetch": "4", "PATH": "/usr/bin"}  # the caller's is untouched
    # With no NVIDIA packages an existing library path is passed through as it is.
    assert transcriber.environment(CPU, {"LD_LIBRARY_PATH": "/opt/x"})["LD_LIBRARY_PATH"] == "/opt/x"


@pytest.mark.usefixtures("no_exec")
def test_a_bad_layout_setting_is_refused_with_status_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPU_THREADS", "lots")
    assert transcriber.main([]) == 2


@pytest.mark.usefixtures("no_exec")
@pytest.mark.parametrize(("argv", "extra"), [
    (["--", "--verbose", "--watch", "pipeline"], ["--verbose", "--watch", "pipeline"]),
    (["--verbose"], ["--verbose"]),
    ([], []),
])
def test_on_the_cpu_it_becomes_one_dramatiq_with_the_arguments_after_the_dashes(
        monkeypatch: pytest.MonkeyPatch, argv: list[str], extra: list[str]) -> None:
    for name, value in {"DEVICE": "cpu", "TRANSCRIBER_PROCESSES": "3", "CPU_THREADS": "2"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(Execed) as execed:
        transcriber.main(argv)
    call = execed.value
    assert call.program == call.argv[0]
    assert call.argv[1:] == ["pipeline.worker.broker", "pipeline.worker.actors", "--processes", "3", "--threads", "1",
                             "--queues", "transcribe", *extra]
    assert (call.env["CPU_THREADS"], call.env["TRANSCRIBER_PROCESSES"], call.env["dramatiq_queue_prefetch"]) == (
        "2", "3", "1")
