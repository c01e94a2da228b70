"""The OpenAPI document against the running service: schemathesis generates requests from it and
checks that no answer is a 5xx and every answer matches the document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.integration


def test_document_and_doc_pages_are_served_without_network(live: Stack) -> None:
    document = live.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    assert {"/api/transcribe/async", "/api/transcribe", "/api/transcribe/async/status/{task_id}",
            "/api/transcribe/async/{task_id}/result", "/api/transcribe/async/{task_id}/events",
            "/api/health", "/api/gpu-status", "/api/cache-stats", "/api/cache/clear",
            "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models",
            "/v1/models/{model_id}", "/api/models"} <= paths
    upload = document["paths"]["/api/transcribe/async"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    for page in ("/api/docs", "/api/redoc"):
        html = live.get(page).text
        assert "http://" not in html.replace(live.url, "") and "https://" not in html
        for asset in [part.split('"')[0] for part in html.split('src="')[1:]]:
            assert asset.startswith("/"), asset
            assert live.get(asset).status_code == 200, asset


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live: Stack, tmp_path: Path) -> None:
    st = Path(sys.executable).parent / "st"
    run = subprocess.run(
        [str(st), "run", f"{live.url}/api/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
         "--max-examples", "12", "--seed", "1", "--request-timeout", "60",
         "--phases", "examples,coverage,fuzzing",
         # The sync routes wait for whole transcriptions: cover them, but with fewer cases.
         "--exclude-path-regex", "^/(api/transcribe|v1/audio/.*)$",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
