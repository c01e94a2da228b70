"""Measuring a body of Python in a child process: its peak resident memory after a warm-up,
for the tests that hold memory flat (and the storage tests that stream through the stores)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.support.helpers import ROOT

# Run in a child: imports and the VAD model are loaded by a warm-up on a short file first, then
# the peak resident size is reset (Linux's clear_refs) and read again after the work. Where the
# reset is refused, the warm-up's peak stays in, which can only overstate the growth.
MEASURE = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def report(**values):
        print("RESULT " + json.dumps(values), flush=True)
''')


def run_measured(body: str, *args: str, timeout: float = 600) -> dict[str, object]:
    """Run ``body`` (Python, after MEASURE's helpers) in a child process, with ``args`` in
    ``sys.argv[1:]``; return what it passed to ``report``."""
    done = subprocess.run([sys.executable, "-c", MEASURE + textwrap.dedent(body), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-2000:] + done.stderr[-2000:]
    return dict(json.loads(lines[-1][len("RESULT "):]))
