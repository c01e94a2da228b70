"""The OpenAPI document against the running service: schemathesis generates requests from it and
checks that no answer is a 5xx and every answer matches the document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.stack import Stack


def test_document_and_doc_pages_are_served_without_network(live: Stack) -> None:
    document = live.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    assert {"/api/transcribe/async", "/api/transcribe", "/api/transcribe/async/status/{task_id}",
            "/api/transcribe/async/{task_id}/result", "/api/transcribe/async/{task_id}/events",
            "/api/health", "/api/gpu-status", "/api/cache-stats", "/api/cache/clear",
            "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models",
            "/v1/models/{model_id}", "/api/models", "/api/transcribe/async/{task_id}/sentences",
            "/api/transcribe/async/{task_id}/paragraphs", "/api/transcribe/async/{task_id}/search",
            "/api/transcribe/async/{task_id}/redacted-audio"} <= paths
    upload = document["paths"]["/api/transcribe/async"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    transcript_fields = {"hotwords", "multichannel", "custom_spelling", "redact_pii", "redact_pii_policies",
                         "redact_pii_sub", "redact_pii_audio"}
    for route in ("/api/transcribe/async", "/api/transcribe", "/v1/audio/transcriptions"):
        form = document["paths"][route]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        if "$ref" in form:
            form = document["components"]["schemas"][form["$ref"].split("/")[-1]]
        assert transcript_fields <= set(form["properties"]), route
    for route in ("/api/transcribe/async/{task_id}/result", "/api/transcribe"):
        method = "get" if route.endswith("result") else "post"
        names = {p["name"] for p in document["paths"][route][method]["parameters"] if p["in"] == "query"}
        assert {"format", "chars_per_caption", "max_lines"} <= names, route
    search = document["paths"]["/api/transcribe/async/{task_id}/search"]["get"]
    assert "words" in {p["name"] for p in search["parameters"]}
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
