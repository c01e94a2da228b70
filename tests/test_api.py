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
