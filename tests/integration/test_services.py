"""`make run` and `make test` first make sure Redis and RabbitMQ answer (pipeline/tooling/services.py):
on a Debian machine without them, they are installed from Debian's packages and started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pipeline.settings import Settings
from pipeline.tooling import services
from tests.support.helpers import ROOT


def test_both_answer_here(settings: Settings) -> None:
    assert services.ensure(settings) == []


def test_the_install_command_is_one_apt_accepts() -> None:
    """apt-get's simulation (-s) of the very command ensure runs: it resolves both packages."""
    if shutil.which("apt-get") is None:
        pytest.skip("not a Debian machine")
    commands = services.install_commands(["redis-server", "rabbitmq-server"], root=True, which=shutil.which)
    install = commands[-1]
    # -s: simulate; -qq would silence what it resolved, so it goes.
    simulated = [*install[:2], "-s", *(arg for arg in install[2:] if arg != "-qq")]
    run = subprocess.run(simulated, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    for package in ("redis-server", "rabbitmq-server"):
        assert f"Inst {package} " in run.stdout or f"{package} is already the newest version" in run.stdout


def test_make_services_prints_one_line_and_no_pika_narration(settings: Settings) -> None:
    env = {**os.environ, "REDIS_URL": settings.redis_url, "RABBITMQ_URL": settings.rabbitmq_url}
    run = subprocess.run([sys.executable, "-m", "pipeline.tooling.services"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert (run.stdout + run.stderr).splitlines() == ["Redis and RabbitMQ answer."]
