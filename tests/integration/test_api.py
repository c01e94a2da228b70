"""The API's own answers (no worker needed), through Flask's test client on the real Redis and RabbitMQ."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from api import create_app
from pipeline.errors import ERRORS_BY_CODE
from pipeline.jobs import JobStore, State
from pipeline.settings import Settings
from tests.support.helpers import ROOT, SPEECH_EN, wait_for


@pytest.fixture
def make_client(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Any]:
    def make(**overrides: Any) -> FlaskClient:
        app = create_app(replace(settings, upload_dir=tmp_path / "uploads", **overrides))
        return app.test_client()

    yield make


def upload(client: FlaskClient, data: bytes | None = None, /, *, to: str = "/api/transcribe/async",
           **form: str) -> Any:
    body: dict[str, Any] = dict(form)
    body["file"] = (io.BytesIO(data if data is not None else SPEECH_EN.read_bytes()), "speech.wav")
    return client.post(to, data=body, content_type="multipart/form-data")


def test_upload_over_max_upload_mb_is_413_and_nothing_is_stored(make_client: Any, tmp_path: Path) -> None:
    client = make_client(max_upload_mb=1)
    response = upload(client, b"\0" * (2 * 2**20))
    assert response.status_code == 413
    assert response.json["error"]["code"] == "request_entity_too_large"
    assert "1 MB" in response.json["error"]["message"]
    assert [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()] == []


def test_recording_longer_than_max_duration_is_refused_at_upload(make_client: Any, tmp_path: Path) -> None:
    response = upload(make_client(max_duration_seconds=3))
    assert response.status_code == 422
    assert response.json["error"]["code"] == "media_too_long"
    assert "MAX_DURATION_SECONDS" in response.json["error"]["message"]
    assert [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://0.0.0.0/hook",
])
def test_webhook_to_an_internal_address_is_refused_at_submit(make_client: Any, url: str, tmp_path: Path) -> None:
    response = upload(make_client(webhook_allow_private=False), webhook_url=url)
    assert response.status_code == 400, response.json
    assert response.json["error"]["field"] == "webhook_url"
    assert [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()] == []


# An address that is no address is a bad request (400); a well-formed field whose value is
# refused is an invalid option (422).
@pytest.mark.parametrize(("form", "field", "status"), [
    ({"webhook_url": "ftp://example.com/hook"}, "webhook_url", 400),
    ({"webhook_url": "http://user:secret@example.com/hook"}, "webhook_url", 400),
    ({"webhook_url": "not a url"}, "webhook_url", 400),
    ({"webhook_auth_header_value": "x"}, "webhook_url", 422),
    ({"webhook_url": "http://127.0.0.1/h", "webhook_auth_header_name": "Authorization"},
     "webhook_auth_header_name", 422),
    ({"webhook_url": "http://127.0.0.1/h", "webhook_auth_header_name": "Bad Header",
      "webhook_auth_header_value": "x"}, "webhook_auth_header_name", 422),
    ({"webhook_url": "http://127.0.0.1/h", "webhook_auth_header_name": "webhook-signature",
      "webhook_auth_header_value": "x"}, "webhook_auth_header_name", 422),
    ({"webhook_url": "http://127.0.0.1/h", "webhook_auth_header_name": "X-Token",
      "webhook_auth_header_value": "a\r\nInjected: 1"}, "webhook_auth_header_value", 422),
    # HTTP cannot carry it: refused here rather than failing at every delivery.
    ({"webhook_url": "http://127.0.0.1/h", "webhook_auth_header_name": "X-Webhook-Token",
      "webhook_auth_header_value": "tok\u2028en"}, "webhook_auth_header_value", 422),
])
def test_webhook_fields_are_checked(make_client: Any, form: dict[str, str], field: str, status: int) -> None:
    response = upload(make_client(webhook_allow_private=True), **form)
    assert response.status_code == status, response.json
    assert response.json["error"]["field"] == field


def test_every_error_is_json(make_client: Any) -> None:
    client = make_client()
    for response, status in (
        (client.get("/api/nothing-here"), 404),
        (client.put("/api/transcribe/async"), 405),
        (client.get("/api/transcribe/async/status/abc"), 404),
        (client.delete("/api/transcribe/async/abc"), 404),
        (client.post("/api/transcribe", data={}), 400),
        (client.post("/api/transcribe?format=docx", data={}), 422),
    ):
        assert response.status_code == status
        assert response.is_json and set(response.json["error"]) >= {"code", "message"}


def test_api_keys_guard_every_route_but_health_and_docs(make_client: Any) -> None:
    client = make_client(api_keys=("key-one", "key-two"))
    for response in (client.get("/api/transcribe/async"), upload(client),
                     client.get("/api/cache-stats"), client.post("/v1/audio/transcriptions"),
                     client.get("/api/transcribe/async", headers={"Authorization": "Bearer wrong"}),
                     client.get("/api/transcribe/async", headers={"Authorization": "key-one"})):
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Open without a key (Redis and RabbitMQ are up here, so health answers 200).
    for path in ("/api/health", "/api/openapi.json", "/api/docs", "/api/redoc"):
        assert client.get(path).status_code == 200, path


def test_a_key_sees_only_its_own_jobs(make_client: Any) -> None:
    client = make_client(api_keys=("key-one", "key-two"))
    one = {"Authorization": "Bearer key-one"}
    two = {"Authorization": "Bearer key-two"}
    body: dict[str, Any] = {"file": (io.BytesIO(SPEECH_EN.read_bytes()), "s.wav")}
    accepted = client.post("/api/transcribe/async", data=body, headers=one,
                           content_type="multipart/form-data")
    assert accepted.status_code == 202, accepted.json
    task_id = accepted.json["task_id"]
    assert client.get(f"/api/transcribe/async/status/{task_id}", headers=one).status_code == 200
    for path in (f"/api/transcribe/async/status/{task_id}", f"/api/transcribe/async/{task_id}/result",
                 f"/api/transcribe/async/{task_id}/events"):
        response = client.get(path, headers=two)
        assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    assert client.delete(f"/api/transcribe/async/{task_id}", headers=two).status_code == 404
    mine = [j["task_id"] for j in client.get("/api/transcribe/async", headers=one).json["jobs"]]
    theirs = [j["task_id"] for j in client.get("/api/transcribe/async", headers=two).json["jobs"]]
    assert task_id in mine and task_id not in theirs
    assert client.delete(f"/api/transcribe/async/{task_id}", headers=one).status_code == 202


def test_rate_limit_per_key_answers_429_with_retry_after(make_client: Any) -> None:
    client = make_client(api_keys=("key-one", "key-two"), rate_limit="3/minute")
    one = {"Authorization": "Bearer key-one"}
    two = {"Authorization": "Bearer key-two"}
    for _ in range(3):
        assert client.get("/api/transcribe/async", headers=one).status_code == 200
    limited = client.get("/api/transcribe/async", headers=one)
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "too_many_requests"
    assert int(limited.headers["Retry-After"]) > 0
    # Counted per key, and health is never limited.
    assert client.get("/api/transcribe/async", headers=two).status_code == 200
    assert client.get("/api/health").status_code == 200


def test_a_url_to_an_internal_address_is_refused(make_client: Any, tmp_path: Path) -> None:
    client = make_client(webhook_allow_private=False)
    for url in ("http://127.0.0.1:9/a.wav", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.8/a.mp3"):
        response = client.post("/api/transcribe/async", data={"url": url})
        assert response.status_code == 400 and response.json["error"]["field"] == "url", url
    assert [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()] == []


# -- failed jobs answer with their own error -------------------------------------------------
# Run apart: importing every module also imports pipeline.worker.broker, which sets Dramatiq's global
# broker, and the engines; neither belongs in the test process.
EVERY_ERROR = """
import importlib, importlib.util, json, pkgutil
from pipeline.errors import PipelineError
for name in ("pipeline", "api", "client"):
    if importlib.util.find_spec(name) is None:
        continue
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        if not info.name.endswith(".__main__"):  # runs a command when imported
            importlib.import_module(info.name)
found, todo = {}, [PipelineError]
while todo:
    cls = todo.pop()
    found[f"{cls.__module__}.{cls.__qualname__}"] = cls.code
    todo += cls.__subclasses__()
print(json.dumps(found))
"""


def test_every_pipeline_error_is_in_the_code_table(test_env: dict[str, str]) -> None:
    # Every module of the service, so that an error class defined outside pipeline/errors.py
    # is found too: a failed job with its code would otherwise answer a bare 500.
    done = subprocess.run([sys.executable, "-c", EVERY_ERROR], cwd=ROOT, env={**os.environ, **test_env},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, str] = json.loads(done.stdout.splitlines()[-1])
    table = {f"{cls.__module__}.{cls.__qualname__}": code for code, cls in ERRORS_BY_CODE.items()}
    # Equal maps: no class missing, none listed under another's code, no two sharing a code.
    assert table == found
    assert all(cls.code == code for code, cls in ERRORS_BY_CODE.items())


def fail_the_next_job(store: JobStore, code: str) -> threading.Thread:
    """Play a worker that fails the next queued job with ``code``, as a stage would."""

    def run() -> None:
        jobs = wait_for(lambda: store.list(status="queued", limit=1)[0], timeout=30, interval=0.02)
        store.transition(jobs[0].task_id, State.FAILED,
                         error={"code": code, "message": f"it failed with {code}"})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("code", sorted(ERRORS_BY_CODE))
def test_a_failed_job_answers_with_its_codes_status(
    make_client: Any, redis_client: redis.Redis, settings: Settings, code: str
) -> None:
    client = make_client()
    thread = fail_the_next_job(JobStore(redis_client, result_ttl=settings.result_ttl_seconds), code)
    response = upload(client, to="/api/transcribe")
    thread.join(30)
    assert response.status_code == ERRORS_BY_CODE[code].http_status, response.json
    assert response.json["error"] == {"code": code, "message": f"it failed with {code}"}


def test_a_failed_job_with_an_unknown_code_keeps_it_and_answers_500(
    make_client: Any, redis_client: redis.Redis, settings: Settings
) -> None:
    client = make_client()
    thread = fail_the_next_job(JobStore(redis_client, result_ttl=settings.result_ttl_seconds),
                               "from_a_newer_version")
    response = upload(client, to="/api/transcribe")
    thread.join(30)
    assert response.status_code == 500
    assert response.json["error"] == {"code": "from_a_newer_version",
                                      "message": "it failed with from_a_newer_version"}


def test_the_openai_route_answers_a_failed_job_with_its_codes_status(
    make_client: Any, redis_client: redis.Redis, settings: Settings
) -> None:
    client = make_client()
    thread = fail_the_next_job(JobStore(redis_client, result_ttl=settings.result_ttl_seconds),
                               "media_decode_error")
    response = upload(client, to="/v1/audio/transcriptions")
    thread.join(30)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "media_decode_error"
