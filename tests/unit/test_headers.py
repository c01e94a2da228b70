"""api/headers.py: nosniff, no referrer and a Content-Security-Policy fit for each kind of answer."""

from __future__ import annotations

import base64
import hashlib

from flask import Flask, Response

from api.headers import NOTHING, docs_policy, init_headers, policy_for, set_headers


def sha256_source(script: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


def directives(policy: str) -> dict[str, str]:
    return {name: value for name, _, value in (part.partition(" ") for part in policy.split("; "))}


def test_each_inline_script_of_a_docs_page_is_allowed_by_its_hash_and_nothing_else_inline() -> None:
    first, second = "window.ui = SwaggerUIBundle({});", "\n  Redoc.init('/api/openapi.json');\n"
    html = f"<html><script src='/a.js'></script><script>{first}</script><p>x</p><script>{second}</script></html>"
    policy = directives(docs_policy(html))
    # A script with a src is loaded from this origin, not inline: only the bare <script> bodies are hashed.
    assert policy["script-src"] == f"'self' {sha256_source(first)} {sha256_source(second)}"
    assert "'unsafe-inline'" not in policy["script-src"]
    assert policy["style-src"] == "'self' 'unsafe-inline'"
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"


def test_a_page_without_inline_scripts_allows_scripts_from_this_origin_only() -> None:
    assert directives(docs_policy("<html><body>no scripts</body></html>"))["script-src"] == "'self'"


def test_json_text_and_streams_get_the_sandbox_that_loads_nothing() -> None:
    assert "sandbox" in NOTHING.split("; ") and "default-src 'none'" in NOTHING.split("; ")
    for response in (Response("{}", mimetype="application/json"), Response("hi", mimetype="text/plain"),
                     Response("1\n00:00:00,000 --> 00:00:01,000\nhi", mimetype="application/x-subrip")):
        assert policy_for(response) == NOTHING


def test_streamed_html_is_not_read_to_hash_it() -> None:
    read: list[str] = []

    def body() -> list[str]:
        read.append("read")
        return ["<script>x()</script>"]

    response = Response(iter(body()), mimetype="text/html")
    read.clear()
    assert policy_for(response) == NOTHING
    assert read == []


def test_a_policy_the_answer_set_itself_is_kept_and_the_other_headers_are_added() -> None:
    response = Response("<html></html>", mimetype="text/html")
    response.headers["Content-Security-Policy"] = "default-src 'self'"
    response.headers["Referrer-Policy"] = "same-origin"
    set_headers(response)
    assert response.headers["Content-Security-Policy"] == "default-src 'self'"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_every_answer_of_an_app_carries_them_errors_included() -> None:
    app = Flask(__name__)
    init_headers(app)
    app.add_url_rule("/docs", "docs", lambda: Response("<script>go()</script>", mimetype="text/html"))
    client = app.test_client()
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.headers["X-Content-Type-Options"] == "nosniff"
    assert missing.headers["Referrer-Policy"] == "no-referrer"
    # Werkzeug's own 404 page is HTML, but answered as an iterator: it gets the policy that loads nothing.
    assert missing.headers["Content-Security-Policy"] == NOTHING
    docs = client.get("/docs")
    assert directives(docs.headers["Content-Security-Policy"])["script-src"] == f"'self' {sha256_source('go()')}"
