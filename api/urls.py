"""The URLs the service writes into answers, stored jobs and webhook bodies.

Never built from the request's Host header (or an X-Forwarded-Host it was not told to trust):
a client that sends ``Host: evil.example`` would otherwise get, store and have signed into its
webhook an address of its choosing. With PUBLIC_URL each URL is absolute under it; without,
it is relative to the API (``/api/...``), which a client resolves against the address it called.
"""

from __future__ import annotations

from typing import Any

from flask import url_for

from api.state import state


def service_url(endpoint: str, **values: Any) -> str:
    path = url_for(endpoint, **values)
    base = state().settings.public_url
    return f"{base}{path}" if base else path
