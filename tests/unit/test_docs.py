"""Swagger UI and ReDoc are served from installed files, with no web framework besides Flask."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.docs import init_docs
from tests.support.helpers import ROOT


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    app = Flask("docs-test")
    init_docs(app)
    return app.test_client()


@pytest.mark.parametrize(("page", "kinds"), [
    ("/api/docs", {"javascript": 2, "css": 1}),
    ("/api/redoc", {"javascript": 1}),
])
def test_doc_pages_load_every_asset_from_the_service(client: FlaskClient, page: str, kinds: dict[str, int]) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html, "the page reaches for another host"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    seen: dict[str, int] = {}
    for asset in assets:
        assert asset.startswith("/api/docs-assets/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.data) > 10_000, f"{asset} is {len(served.data)} bytes: not a UI build"
        mimetype = served.mimetype or ""
        kind = "css" if mimetype == "text/css" else "javascript" if "javascript" in mimetype else "other"
        seen[kind] = seen.get(kind, 0) + 1
        served.close()
    assert seen == kinds


def test_an_unknown_asset_is_a_404(client: FlaskClient) -> None:
    assert client.get("/api/docs-assets/nothing/x.js").status_code == 404
    assert client.get("/api/docs-assets/redoc/no-such-file.js").status_code == 404


def test_the_docs_bring_no_other_web_framework() -> None:
    code = ("import sys; from flask import Flask; from api.docs import init_docs; app = Flask('x'); "
            "init_docs(app); app.test_client().get('/api/docs-assets/redoc/redoc.standalone.js'); "
            "print(sorted(m for m in ('django', 'fastapi', 'starlette', 'mkdocs', 'flask_openapi3') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
