"""The API's own answers (no worker needed), through Flask's test client on the real Redis and RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from api import create_app
from pipeline.settings import Settings
from tests.helpers import SPEECH_EN


@pytest.fixture
def make_client(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Any]:
    def make(**overrides: Any) -> FlaskClient:
        app = create_app(replace(settings, upload_dir=tmp_path / "uploads", **overrides))
        return app.test_client()

    yield make


def upload(client: FlaskClient, data: bytes | None = None, **form: str) -> Any:
    body: dict[str, Any] = dict(form)
    body["file"] = (__import__("io").BytesIO(data if data is not None else SPEECH_EN.read_bytes()),
                    "speech.wav")
    return client.post("/api/transcribe/async", data=body, content_type="multipart/form-data")


def test_upload_over_max_upload_mb_is_413_and_nothing_is_stored(make_client: Any, tmp_path: Path) -> None:
    client = make_client(max_upload_mb=1)
    response = upload(client, b"\0" * (2 * 2**20))
    assert response.status_code == 413
    assert response.json["error"]["code"] == "request_entity_too_large"
    assert "1 MB" in response.json["error"]["message"]
    assert list((tmp_path / "uploads").iterdir()) == []


def test_recording_longer_than_max_duration_is_refused_at_upload(make_client: Any, tmp_path: Path) -> None:
    response = upload(make_client(max_duration_seconds=3))
    assert response.status_code == 422
    assert response.json["error"]["code"] == "media_too_long"
    assert "MAX_DURATION_SECONDS" in response.json["error"]["message"]
    assert list((tmp_path / "uploads").iterdir()) == []


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
    assert list((tmp_path / "uploads").iterdir()) == []


@pytest.mark.parametrize(("form", "field"), [
    ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
    ({"webhook_url": "http://user:secret@example.com/hook"}, "webhook_url"),
    ({"webhook_url": "not a url"}, "webhook_url"),
    ({"webhook_auth_header_value": "x"}, "webhook_url"),
    ({"webhook_url": "http://127.0.0.1/h", "webhook_auth_header_name": "Authorization"},
     "webhook_auth_header_name"),
    ({"webhook_url": "http://127.0.0.1/h", "webhook_auth_header_name": "Bad Header",
      "webhook_auth_header_value": "x"}, "webhook_auth_header_name"),
    ({"webhook_url": "http://127.0.0.1/h", "webhook_auth_header_name": "webhook-signature",
      "webhook_auth_header_value": "x"}, "webhook_auth_header_name"),
    ({"webhook_url": "http://127.0.0.1/h", "webhook_auth_header_name": "X-Token",
      "webhook_auth_header_value": "a\r\nInjected: 1"}, "webhook_auth_header_value"),
])
def test_webhook_fields_are_checked(make_client: Any, form: dict[str, str], field: str) -> None:
    response = upload(make_client(webhook_allow_private=True), **form)
    assert response.status_code in (400, 422), response.json
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


def test_a_bad_setting_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import SettingsError

    monkeypatch.setenv("CACHE_TTL_SECONDS", "an hour")
    with pytest.raises(SettingsError, match="CACHE_TTL_SECONDS"):
        create_app()


def test_api_keys_guard_every_route_but_health_and_docs(make_client: Any) -> None:
    client = make_client(api_keys=("key-one", "key-two"))
    for response in (client.get("/api/transcribe/async"), upload(client),
                     client.get("/api/cache-stats"), client.post("/v1/audio/transcriptions"),
                     client.get("/api/transcribe/async", headers={"Authorization": "Bearer wrong"}),
                     client.get("/api/transcribe/async", headers={"Authorization": "key-one"})):
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("/api/health", "/api/openapi.json", "/api/docs", "/api/redoc"):
        assert client.get(path).status_code in (200, 503), path


def test_a_key_sees_only_its_own_jobs(make_client: Any) -> None:
    client = make_client(api_keys=("key-one", "key-two"))
    one = {"Authorization": "Bearer key-one"}
    two = {"Authorization": "Bearer key-two"}
    body: dict[str, Any] = {"file": (__import__("io").BytesIO(SPEECH_EN.read_bytes()), "s.wav")}
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
    assert client.get("/api/health").status_code in (200, 503)


def test_a_malformed_rate_limit_stops_start_up() -> None:
    from pipeline.errors import SettingsError

    with pytest.raises(SettingsError, match="RATE_LIMIT"):
        Settings.from_env({"RATE_LIMIT": "lots"})


def test_a_url_to_an_internal_address_is_refused(make_client: Any, tmp_path: Path) -> None:
    client = make_client(webhook_allow_private=False)
    for url in ("http://127.0.0.1:9/a.wav", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.8/a.mp3"):
        response = client.post("/api/transcribe/async", data={"url": url})
        assert response.status_code == 400 and response.json["error"]["field"] == "url", url
    assert list((tmp_path / "uploads").iterdir()) == []
