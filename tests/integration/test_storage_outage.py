"""The object store going away under a running API: an upload is answered 503 in JSON that
names the store, and nothing of it is kept, neither a job record nor a file on the API host."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from api import create_app
from pipeline.keys import ACTIVE_KEY
from pipeline.settings import Settings
from pipeline.tooling.s3 import seaweedfs, stop
from tests.support.helpers import SPEECH_EN


def test_upload_while_the_store_is_down_is_503_and_keeps_nothing(
        settings: Settings, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with seaweedfs(tmp_path / "weed") as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        scratch = tmp_path / "scratch"
        app = create_app(replace(settings, storage_url=f"s3://outage-{uuid.uuid4().hex[:8]}/svc",
                                 upload_dir=tmp_path / "uploads", scratch_dir=scratch))
        client = app.test_client()
        stop(server)  # the API started against a live store; now it goes away

        jobs_before = redis_client.zcard(ACTIVE_KEY)
        response = client.post("/api/transcribe/async", content_type="multipart/form-data",
                               data={"file": (io.BytesIO(SPEECH_EN.read_bytes()), "speech.wav")})

    assert response.status_code == 503, response.get_data(as_text=True)
    error = response.json["error"]
    assert error["code"] == "storage_unavailable"
    assert server.endpoint in error["message"] or "STORAGE_URL" in error["message"]
    assert redis_client.zcard(ACTIVE_KEY) == jobs_before  # no job left behind, final or not
    assert [p for p in scratch.rglob("*") if p.is_file()] == []
