"""`make run`: the Procfile's processes under supervisord, which starts again whatever exits.

Dramatiq's main process shuts all its worker processes down and exits when one of them dies
(killed for memory, say); that is by design, and it leaves restarting to a supervisor. Honcho
is not one: it stops every process when one exits. So ``python -m pipeline.tooling.supervise`` writes
a supervisord configuration from the Procfile (one program per line, the same commands,
``autorestart``) into the state folder and replaces itself with supervisord in the
foreground. Each program's output reaches the console a line at a time behind its name, as
honcho showed it, through ``python -m pipeline.tooling.supervise --prefix NAME -- COMMAND``, which
also passes supervisord's stop signal on to the command and exits with its status.

Each port has its own state folder (``data/run-PORT``: configuration, control socket, pid
file), so two stacks on different ports run side by side from one checkout. Started again
while the previous supervisor of the same port is still stopping (Ctrl-C, then ``make run`` at
once), it waits for that one to exit instead of failing on its socket.

Production runs the same commands under systemd or Kubernetes (docs/operations.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

log = logging.getLogger(__name__)

# Seconds a program must stay up to count as started; one that exits sooner is retried this
# many times, then left FATAL (a setting that stops start-up would otherwise loop for ever).
START_SECONDS = 5
START_RETRIES = 5
# Dramatiq finishes the messages in hand on SIGTERM; a transcription may take this long to
# reach its next segment, after which the job's lease lets another worker redo it anyway.
STOP_WAIT_SECONDS = 60
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


@dataclass(frozen=True)
class Program:
    name: str
    command: str  # as the Procfile writes it, for a shell


def read_procfile(path: Path) -> list[Program]:
    programs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip().isidentifier() or not command.strip():
            raise SystemExit(f"{path}:{number}: not `name: command`: {line!r}")
        programs.append(Program(name.strip(), command.strip()))
    if not programs:
        raise SystemExit(f"{path} names no process")
    return programs


def _ini(value: str) -> str:
    # supervisord expands %(name)s in its values: a literal % is written %%.
    return value.replace("%", "%%")


def render_config(programs: Sequence[Program], *, root: Path, state_dir: Path, port: int,
                  python: str = sys.executable) -> str:
    """The supervisord configuration: every program started at once, restarted when it exits
    (whatever its status), its output on supervisord's own stdout."""
    width = max(len(p.name) for p in programs)
    sections = [
        "[supervisord]",
        "nodaemon=true",
        # In the foreground supervisord writes its own lines (spawned, exited, gave up) on the
        # console already; a log file would only repeat them.
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        f"pidfile={_ini(str(state_dir / 'supervisord.pid'))}",
        f"childlogdir={_ini(str(state_dir))}",
        "",
        # `supervisorctl -c data/supervisord.conf status` (or restart NAME) while it runs.
        "[unix_http_server]",
        f"file={_ini(str(state_dir / 'supervisor.sock'))}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_ini(str(state_dir / 'supervisor.sock'))}",
        "",
    ]
    for program in programs:
        command = [python, "-m", "pipeline.tooling.supervise", "--prefix", program.name.ljust(width), "--",
                   # bash runs a lone command in its own place, so the signal reaches it.
                   "bash", "-c", program.command]
        sections += [
            f"[program:{program.name}]",
            f"command={_ini(shlex.join(command))}",
            f"directory={_ini(str(root))}",
            f"environment=PORT=\"{port}\"",
            "autostart=true",
            "autorestart=true",
            f"startsecs={START_SECONDS}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT_SECONDS}",
            # The prefixer passes TERM on; if the command has not exited by stopwaitsecs, its
            # whole process group (Dramatiq's worker processes included) is killed.
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "",
        ]
    return "\n".join(sections)


def prefix_output(name: str, command: Sequence[str]) -> int:
    """Run ``command``, writing each line of its output behind ``name``; pass the signals a
    supervisor stops with on to it; return its exit status (128 + signal when killed)."""
    child = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    head = f"{name} | ".encode()
    out = sys.stdout.buffer
    assert child.stdout is not None
    for line in child.stdout:
        out.write(head + line)
        out.flush()
    status = child.wait()
    return 128 - status if status < 0 else status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        return b"supervisord" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (not Linux): trust the signal


def wait_for_previous(state_dir: Path, timeout: float = STOP_WAIT_SECONDS + 15,
                      say: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
                      pause: Callable[[float], None] = time.sleep) -> None:
    """Wait until the supervisor that last ran from ``state_dir`` has exited, then clear what it
    left (its pid file and control socket). A supervisor that is still up after ``timeout``
    is running, not stopping: stop with a message that says so."""
    pidfile, socket = state_dir / "supervisord.pid", state_dir / "supervisor.sock"
    try:
        pid = int(pidfile.read_text().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid and _alive(pid):
        say(f"waiting for the previous supervisor of this port (pid {pid}) to stop ...")
        deadline = clock() + timeout
        while _alive(pid):
            if clock() > deadline:
                raise SystemExit(f"a supervisor of this port (pid {pid}, {state_dir}) is still running: stop it "
                                 "first, or start this one on another port (PORT=9000 make run)")
            pause(0.2)
    pidfile.unlink(missing_ok=True)
    socket.unlink(missing_ok=True)


def supervisord_path() -> str:
    beside = Path(sys.executable).with_name("supervisord")
    found = str(beside) if beside.exists() else shutil.which("supervisord")
    if found is None:
        raise SystemExit("supervisord is not installed: `make install` (or pip install supervisor)")
    return found


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tooling.supervise", description=__doc__.split("\n\n")[0])
    parser.add_argument("-f", "--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("PORT", "8511")))
    parser.add_argument("--state-dir", type=Path,
                        help="where supervisord.conf, its socket and pid file go (default data/run-PORT)")
    parser.add_argument("--prefix", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prefix is not None:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        sys.exit(prefix_output(args.prefix, command))

    root = Path.cwd()  # where the commands run, as honcho ran them: the project's folder
    state_dir = (args.state_dir or Path("data") / f"run-{args.port}").resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    wait_for_previous(state_dir)
    config = state_dir / "supervisord.conf"
    config.write_text(render_config(read_procfile(args.procfile), root=root, state_dir=state_dir,
                                    port=args.port))
    os.environ["PORT"] = str(args.port)
    binary = supervisord_path()
    sys.stdout.flush()
    os.execv(binary, [binary, "--nodaemon", "--configuration", str(config)])


if __name__ == "__main__":
    main()
