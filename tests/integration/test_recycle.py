"""MAX_TASKS_PER_CHILD with the real Dramatiq CLI: worker processes restart, no job is lost."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis

from pipeline.jobs import new_task_id
from pipeline.options import TranscribeOptions
from pipeline.queues import EXTRACT_ACTOR, NOTIFY_ACTOR, send
from pipeline.rabbitmq import build_broker
from pipeline.settings import Settings
from pipeline.uploads import upload_path
from pipeline.worker.context import build_context
from tests.support.helpers import ROOT, SPEECH_EN
from tests.support.stack import own_vhost


def test_worker_recycles_after_max_tasks_without_losing_a_job(
    test_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    with own_vhost("whisper-pipeline-recycle") as amqp:
        # The in-process tests' database: this test has it to itself while it runs.
        env = {**test_env, "RABBITMQ_URL": amqp, "REDIS_URL": settings.redis_url,
               "UPLOAD_DIR": str(tmp_path / "uploads"), "MAX_TASKS_PER_CHILD": "2"}
        worker_settings = Settings.from_env(env)
        redis.Redis.from_url(worker_settings.redis_url).flushdb()
        ctx = build_context(worker_settings)
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "dramatiq"), "pipeline.worker.broker", "pipeline.worker.actors",
             "--processes", "1", "--threads", "1"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            broker = build_broker(worker_settings)
            ids = []
            # Three jobs are six messages at least (extract, transcribe): two recycles or more.
            for n in range(3):
                task_id = new_task_id()
                target = upload_path(worker_settings.upload_dir, task_id)
                shutil.copy(SPEECH_EN, target)
                # A different beam size each time, so that no job is a cache hit of another.
                ctx.jobs.create(task_id, TranscribeOptions(beam_size=n + 1), upload_path=str(target),
                                sha256=hashlib.sha256(target.read_bytes()).hexdigest())
                send(broker, EXTRACT_ACTOR, task_id)
                ids.append(task_id)
            deadline = time.monotonic() + 120
            while not all(ctx.jobs.get(t).is_final for t in ids):
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
                time.sleep(0.2)
            assert [ctx.jobs.get(t).status for t in ids] == ["completed"] * 3
            # Each job finished once: its history has one completion.
            for task_id in ids:
                assert [h["status"] for h in ctx.jobs.history(task_id)].count("completed") == 1
            text = (tmp_path / "worker.log").read_text()
            assert text.count("recycling the worker processes") >= 2
            assert worker.poll() is None, "the main process stays up while its workers restart"
        finally:
            worker.terminate()
            worker.wait(timeout=30)


def test_worker_exports_dramatiq_metrics_when_asked(test_env: dict[str, str], tmp_path: Path) -> None:
    import socket

    import requests

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with own_vhost("whisper-pipeline-metrics") as amqp:
        env = {**os.environ, **test_env, "RABBITMQ_URL": amqp, "WORKER_METRICS_PORT": str(port),
               "dramatiq_prom_db": str(tmp_path / "prom")}
        env.pop("WORKER_METRICS_BIND", None)  # the default: loopback only
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "dramatiq"), "pipeline.worker.broker", "pipeline.worker.actors",
             "--processes", "1", "--threads", "1", "--queues", "notify"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            # Counters appear once a message has been processed: one for a job that does not exist.
            send(build_broker(Settings.from_env({**test_env, "RABBITMQ_URL": amqp})), NOTIFY_ACTOR, "no-such-job")
            deadline = time.monotonic() + 30
            while True:
                try:
                    text = requests.get(f"http://127.0.0.1:{port}/", timeout=2).text
                    if "dramatiq_" in text:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "no metrics served"
                time.sleep(0.3)
            assert "dramatiq_workers_total" in text or "dramatiq_messages_total" in text
            # The port has no authentication: it listens on loopback alone unless told otherwise.
            assert listening_on(port) == {"127.0.0.1"}
        finally:
            worker.terminate()
            worker.wait(timeout=30)


def listening_on(port: int) -> set[str]:
    """The local addresses with a socket listening on TCP ``port``, from /proc/net/tcp{,6}."""
    import ipaddress

    found = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(host)
            # The kernel writes each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found
