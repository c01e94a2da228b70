"""pipeline/tooling/stack.py, which starts the service for the tests, the chaos tests and the
benchmark: the Procfile read as it is, the caller's settings only, one registry of Redis
databases, and no process left behind."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.queues import QUEUES
from pipeline.tooling import stack
from pipeline.tooling.stack import ProcessSpec


def test_the_environment_holds_the_callers_settings_and_no_stray_one() -> None:
    # Every setting set in the shell, one of them in lower case, and a Dramatiq knob.
    shell = {name: "stray" for name in stack.setting_names()}
    shell.pop("DEFAULT_MODEL")
    shell.update({"HOME": "/home/me", "PATH": "/usr/bin", "API_KEYS": "secret", "default_model": "base",
                  "dramatiq_queue_prefetch": "50", "LANG": "C.UTF-8"})
    env = stack.service_env({"REDIS_URL": "redis://localhost:6379/3"}, base=shell)
    assert env["REDIS_URL"] == "redis://localhost:6379/3"
    assert env["HOME"] == "/home/me" and env["LANG"] == "C.UTF-8"
    assert "stray" not in env.values()
    for stray in ("API_KEYS", "default_model", "dramatiq_queue_prefetch"):
        assert stray not in env
    assert env["PATH"].split(os.pathsep)[:2] == [str(stack.BIN), "/usr/bin"]


def test_the_test_process_itself_runs_without_the_shells_settings() -> None:
    # tests/conftest.py drops them when the session starts.
    assert not stack.setting_names() & set(os.environ)


def test_the_procfile_is_read_as_it_is_bound_to_loopback() -> None:
    specs = stack.read_procfile(8123)
    assert {"web", "worker", "transcriber"} <= set(specs)
    for spec in specs.values():
        assert Path(spec.argv[0]).parent == stack.BIN, spec.argv[0]
        assert "WORKER_METRICS_PORT" not in spec.env
    assert "127.0.0.1:8123" in specs["web"].argv and not any("0.0.0.0" in a for a in specs["web"].argv)
    assert specs["transcriber"].env == {"dramatiq_queue_prefetch": "1"}
    assert specs["transcriber"].queues == {"transcribe"}
    assert frozenset().union(*(s.queues for s in specs.values())) == set(QUEUES)


def test_options_are_replaced_or_added() -> None:
    spec = ProcessSpec("w", ("dramatiq", "pipeline.worker.broker", "--processes", "1", "--queues", "a", "b"))
    changed = spec.with_options(processes=3, threads=2)
    assert changed.argv == ("dramatiq", "--threads", "2", "pipeline.worker.broker", "--processes", "3",
                            "--queues", "a", "b")
    assert changed.queues == {"a", "b"} and spec.argv[3] == "1"
