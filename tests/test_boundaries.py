"""Which process may import what: the web process stores jobs and queues messages, and never
loads an engine (nor the half-gigabyte of torch behind one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT

ENGINE_MODULES = ("pipeline.engines", "torch", "faster_whisper", "whisper", "ctranslate2")

# In a fresh interpreter: this test process has long imported the engines for other tests.
BUILD_THE_APP = f"""
import json, sys
from api import create_app
app = create_app()
assert app.url_map.bind("localhost").match("/api/health")
print(json.dumps(sorted(m for m in {ENGINE_MODULES!r} if m in sys.modules)))
"""


def test_the_web_process_never_imports_the_engines(test_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", BUILD_THE_APP], cwd=ROOT, env={**os.environ, **test_env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
