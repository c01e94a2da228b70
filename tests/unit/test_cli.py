"""The installed `whisper-pipeline` command against the real service: real gunicorn, Dramatiq
workers, Redis and RabbitMQ, with the script run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from client import UNREACHABLE, ApiError, Client, parse_sse
from client.cli import EXIT_REFUSED, EXIT_TIMEOUT, EXIT_UNAVAILABLE, describe, exit_code
from tests.support.helpers import ROOT

# The user's own settings must not leak into the tests.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("WHISPER_PIPELINE_")}


def test_client_errors_and_event_parsing() -> None:
    assert exit_code(ApiError(None, UNREACHABLE, "x")) == EXIT_UNAVAILABLE
    assert exit_code(ApiError(None, "timeout", "x")) == EXIT_TIMEOUT
    assert exit_code(ApiError(503, "dependency_unavailable", "x")) == EXIT_UNAVAILABLE
    assert exit_code(ApiError(422, "invalid_option", "x", "engine")) == EXIT_REFUSED
    assert describe(ApiError(415, "unsupported_media", "Not audio.")) == (
        "the service refused the request (HTTP 415): Not audio.")
    assert Client("http://x", api_key="k").session.headers["Authorization"] == "Bearer k"
    assert "Authorization" not in Client("http://x").session.headers
    stream = [b": keep-alive\n\nevent: status\r\ndata: {\"status\"", b": \"queued\"}\n\nevent: end\n",
              b"data: {}\n\n"]
    assert list(parse_sse(iter(stream))) == [("status", '{"status": "queued"}'), ("end", "{}")]


def test_the_client_needs_nothing_of_the_service() -> None:
    # The client installs and starts on machines without the server's stack (Flask, numpy, torch).
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['whisper-pipeline', '--help']\n"
        "try:\n"
        "    runpy.run_module('client', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = ('api', 'pipeline', 'flask', 'dramatiq', 'redis', 'numpy', 'torch', 'whisper', 'faster_whisper')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=ENV,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "usage: whisper-pipeline" in run.stdout
    assert run.stdout.splitlines()[-1] == "[]", run.stdout.splitlines()[-1]
