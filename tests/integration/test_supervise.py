"""pipeline/tooling/supervise.py: `make run`'s supervisor, started again at once and beside another port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.tooling import supervise

# A program that takes two seconds to stop, as a worker finishing its message does; it says it is
# up (a file named after its port) once its handler is in place.
SLOW_TO_STOP = ("slow: python -c \"import os, pathlib, signal, sys, time; "
                "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(2), sys.exit(0))); "
                "pathlib.Path('up-' + os.environ['PORT']).touch(); time.sleep(600)\"\n")


def until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def test_the_configuration_keeps_each_ports_state_in_its_own_folder(tmp_path: Path) -> None:
    programs = supervise.read_procfile(_procfile(tmp_path, "a: sleep 600\n"))
    config = supervise.render_config(programs, root=tmp_path, state_dir=tmp_path / "run-9000", port=9000)
    assert f"file={tmp_path / 'run-9000' / 'supervisor.sock'}" in config
    assert f"pidfile={tmp_path / 'run-9000' / 'supervisord.pid'}" in config
    assert 'environment=PORT="9000"' in config and "[program:a]" in config


def test_a_dead_supervisors_pid_file_and_socket_are_cleared_without_waiting(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "supervisord.pid").write_text(f"{dead.pid}\n")
    (tmp_path / "supervisor.sock").write_text("")
    said: list[str] = []
    supervise.wait_for_previous(tmp_path, say=said.append)
    assert said == [] and not (tmp_path / "supervisord.pid").exists() and not (tmp_path / "supervisor.sock").exists()


def test_a_supervisor_that_does_not_stop_is_reported_not_waited_for_forever(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "supervisord.pid").write_text("4242\n")
    monkeypatch.setattr(supervise, "_alive", lambda pid: True)
    now = [0.0]

    def pause(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(SystemExit, match="still running"):
        supervise.wait_for_previous(tmp_path, timeout=5, say=lambda line: None, clock=lambda: now[0], pause=pause)
    assert now[0] >= 5 and (tmp_path / "supervisord.pid").exists()


def _procfile(folder: Path, text: str) -> Path:
    path = folder / "Procfile"
    path.write_text(text)
    return path


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[int], subprocess.Popen[bytes]]]:
    _procfile(tmp_path, SLOW_TO_STOP)
    started: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def run(port: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.tooling.supervise", "-f", "Procfile", "-p", str(port)],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _serving(folder: Path, proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    def check() -> bool:
        assert proc.poll() is None, (proc.stdout.read() if proc.stdout else b"").decode(errors="replace")
        pid, up = folder / "supervisord.pid", folder.parent.parent / f"up-{folder.name.removeprefix('run-')}"
        if not ((folder / "supervisor.sock").exists() and pid.exists() and pid.read_text().strip() == str(proc.pid)
                and up.exists()):
            return False
        up.unlink()
        return True

    return check


Start = Callable[[int], subprocess.Popen[bytes]]


def test_started_again_at_once_it_waits_for_the_old_one_and_runs(tmp_path: Path, start: Start) -> None:
    state = tmp_path / "data" / "run-9311"
    first = start(9311)
    until(_serving(state, first), what="the first supervisor's socket")
    first.send_signal(signal.SIGINT)  # Ctrl-C: its program takes two seconds to stop
    second = start(9311)
    assert first.wait(timeout=30) == 0
    until(_serving(state, second), what="the second supervisor's socket")
    assert second.poll() is None
    second.send_signal(signal.SIGTERM)
    out = second.communicate(timeout=30)[0].decode()
    assert "waiting for the previous supervisor of this port" in out
    assert "Another program is already listening" not in out


def test_two_ports_run_side_by_side_from_one_folder(tmp_path: Path, start: Start) -> None:
    a, b = start(9312), start(9313)
    until(_serving(tmp_path / "data" / "run-9312", a), what="port 9312's supervisor")
    until(_serving(tmp_path / "data" / "run-9313", b), what="port 9313's supervisor")
    for proc in (a, b):
        proc.send_signal(signal.SIGTERM)
    assert a.wait(timeout=30) == 0 and b.wait(timeout=30) == 0
