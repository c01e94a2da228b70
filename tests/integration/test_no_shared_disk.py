"""Hosts that share no disk: the Procfile's processes started as if each ran on a host of its
own (web, the extract worker and two transcribers, each with its own UPLOAD_DIR, MODEL_DIR,
CACHE_DIR and SCRATCH_DIR), sharing only Redis, RabbitMQ and an S3 server (SeaweedFS). A short
file and a recording cut into chunks that both transcribers work on complete with the right
words, and afterwards the bucket holds nothing of those jobs and no host keeps a file of them."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline.storage import S3Storage, from_url, job_prefix
from pipeline.tooling.s3 import S3Server
from pipeline.tooling.stack import ROOT, Service, free_port, read_procfile, redis_database, redis_url, service_env
from tests.support.helpers import SPEECH_EN, SPEECH_EN_TEXT, long_speech, wer
from tests.support.stack import own_vhost

HOSTS = ("web", "worker", "transcriber", "transcriber2")
REPEATS = 10  # the speech fixture said 10 times: about 70 s, cut into 4 chunks of about 20 s


@dataclass
class Hosts:
    url: str
    service: Service
    storage: S3Storage
    folders: dict[str, Path]  # each host's own folder, holding its four directories

    def upload(self, path: Path) -> str:
        with path.open("rb") as fh:
            answer = requests.post(self.url + "/api/transcribe/async", files={"file": (path.name, fh)},
                                   timeout=120)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["task_id"])

    def wait_final(self, task_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, Any] = requests.get(f"{self.url}/api/transcribe/async/status/{task_id}",
                                                timeout=30).json()
            if body["status"] in ("completed", "failed", "cancelled"):
                return body
            time.sleep(0.2)
        raise AssertionError(f"job {task_id} not final after {timeout} s; logs in {self.service.logs}")

    def objects(self, task_id: str) -> list[str]:
        client = self.storage.client
        prefix = f"{self.storage.prefix}/{job_prefix(task_id)}"
        listed = client.list_objects_v2(Bucket=self.storage.bucket, Prefix=prefix).get("Contents", [])
        unfinished = client.list_multipart_uploads(Bucket=self.storage.bucket, Prefix=prefix).get("Uploads", [])
        return [item["Key"] for item in listed] + [item["Key"] for item in unfinished]

    def files_of(self, task_id: str) -> list[Path]:
        """Files named after the job anywhere in any host's folders."""
        return [p for folder in self.folders.values() for p in folder.rglob(f"*{task_id}*")]


@pytest.fixture(scope="module")
def hosts(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory,
          monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Hosts]:
    tmp = tmp_path_factory.mktemp("hosts")
    bucket = f"no-shared-disk-{uuid.uuid4().hex[:8]}"
    for name, value in s3_server.env().items():
        monkeypatch_module.setenv(name, value)
    monkeypatch_module.delenv("AWS_ENDPOINT_URL", raising=False)
    storage = from_url(f"s3://{bucket}/service")
    assert isinstance(storage, S3Storage)
    with redis_database("no-shared-disk") as db, own_vhost("whisper-pipeline-no-shared-disk") as amqp:
        shared = {
            "REDIS_URL": redis_url(db),
            "RABBITMQ_URL": amqp,
            "STORAGE_URL": storage.url,
            **s3_server.env(),
            "DEVICE": "cpu",
            "CPU_THREADS": "1",
            "TRANSCRIBER_PROCESSES": "1",
            "MAX_RETRIES": "1",
            "LOG_FORMAT": "text",
            # Recordings over 30 s are cut into chunks of about 20 s; none is split for capacity.
            "LONG_AUDIO_SECONDS": "30",
            "CHUNK_SECONDS": "20",
            "SPLIT_MIN_SECONDS": "0",
        }
        port = free_port()
        specs = read_procfile(port)
        specs["web"] = specs["web"].with_options(workers=1)
        specs["transcriber2"] = specs["transcriber"]
        service = Service({name: specs[name] for name in HOSTS}, service_env(shared), tmp / "logs")
        folders = {name: tmp / name for name in HOSTS}
        url = f"http://127.0.0.1:{port}"
        try:
            for name, folder in folders.items():
                own = {variable: str(folder / sub) for variable, sub in (
                    ("UPLOAD_DIR", "uploads"), ("MODEL_DIR", "models"), ("CACHE_DIR", "cache"),
                    ("SCRATCH_DIR", "scratch"))}
                service.start(name, **own)
            # Both transcribers and the extract worker beat before anything is sent.
            service.wait_ready(url, timeout=180, ready=lambda health: int(health.get("workers", 0)) >= 3)
            yield Hosts(url=url, service=service, storage=storage, folders=folders)
        finally:
            service.stop_all()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.timeout(900)
def test_a_short_file_and_a_chunked_recording_across_hosts(hosts: Hosts, tmp_path: Path) -> None:
    short = hosts.upload(SPEECH_EN)
    long_file = long_speech(tmp_path / "long.wav", REPEATS)
    chunked = hosts.upload(long_file)

    body = hosts.wait_final(short)
    assert body["status"] == "completed", body
    assert wer(SPEECH_EN_TEXT, body["result"]["text"]) <= 0.15

    body = hosts.wait_final(chunked, timeout=600)
    assert body["status"] == "completed", body
    assert wer(" ".join([SPEECH_EN_TEXT] * REPEATS), body["result"]["text"]) <= 0.2
    starts = [s["start"] for s in body["result"]["segments"]]
    assert starts == sorted(starts) and starts[-1] > 50  # timestamps run on across the chunks

    # Both transcribers took chunks of the long recording: each names it in its own log.
    for name in ("transcriber", "transcriber2"):
        log = hosts.service.log_path(name).read_text(errors="replace")
        assert f"job {chunked}: chunk " in log, f"{name} transcribed no chunk:\n{log[-3000:]}"

    # Nothing of either job is left: not in the bucket, not on any host.
    deadline = time.monotonic() + 30  # the last worker removes them right after the final state
    while (hosts.objects(short) or hosts.objects(chunked)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert hosts.objects(short) == [] and hosts.objects(chunked) == []
    assert hosts.files_of(short) == [] and hosts.files_of(chunked) == []
    for name, folder in hosts.folders.items():
        scratch = folder / "scratch"
        leftovers = [p for p in scratch.rglob("*") if p.is_file()] if scratch.exists() else []
        assert leftovers == [], f"{name} kept scratch files: {leftovers}"
        uploads = folder / "uploads"
        stored = [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []
        assert stored == [], f"{name} wrote into its own UPLOAD_DIR: {stored}"


def test_a_store_that_does_not_answer_stops_start_up(tmp_path: Path) -> None:
    """The API and the workers refuse to start, naming STORAGE_URL, the endpoint and the bucket."""
    dead = f"http://127.0.0.1:{free_port()}"
    env = service_env({"STORAGE_URL": "s3://nobody-home/x", "AWS_ENDPOINT_URL_S3": dead,
                       "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1",
                       "UPLOAD_DIR": str(tmp_path / "u"), "SCRATCH_DIR": str(tmp_path / "s"),
                       "MODEL_DIR": str(tmp_path / "m"), "LOG_FORMAT": "text"})
    for code in ("import api; api.create_app()", "import pipeline.worker.broker"):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=120, check=False, cwd=ROOT)
        assert done.returncode != 0, code
        assert "StorageUnavailable" in done.stderr, done.stderr[-2000:]
        assert "STORAGE_URL=s3://nobody-home/x" in done.stderr and dead in done.stderr, done.stderr[-2000:]
