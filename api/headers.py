"""Headers every answer carries: ``X-Content-Type-Options: nosniff`` and a Content-Security-Policy
fit for what the answer is.

- JSON, transcripts (text, srt, vtt, ...), event streams, metrics and asset files: nothing to
  load or run, sandboxed, so that a transcript opened in a browser is only ever text, whatever
  a recording's name or words hold.
- The page at ``/`` sets its own policy (``api.page``).
- The docs (Swagger UI, ReDoc): scripts from this origin plus the one inline script each page
  holds, allowed by its hash, never by ``'unsafe-inline'``; their styles are injected at run
  time, which only ``'unsafe-inline'`` for styles allows.
"""

from __future__ import annotations

import base64
import hashlib
import re

from flask import Flask, Response

NOTHING = "; ".join((
    "default-src 'none'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "sandbox",
))
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def docs_policy(html: str) -> str:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
                      for body in _INLINE_SCRIPT.findall(html))
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self' {hashes}".rstrip(),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "object-src 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ))


def policy_for(response: Response) -> str:
    if response.mimetype == "text/html" and not response.is_streamed:
        return docs_policy(response.get_data(as_text=True))
    return NOTHING


def set_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if "Content-Security-Policy" not in response.headers:
        response.headers["Content-Security-Policy"] = policy_for(response)
    return response


def init_headers(app: Flask) -> None:
    app.after_request(set_headers)
