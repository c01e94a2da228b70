"""API keys and per-key rate limits.

With API_KEYS set, every /api and /v1 route but health and the docs needs
``Authorization: Bearer <key>``; each key owns the jobs it submits and sees no other's.
RATE_LIMIT (for example ``60/minute;1000/day``) is counted per key, or per client address
without keys, in Redis, so every API process and host shares one count.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from pipeline.errors import Unauthorized
from pipeline.settings import Settings

OPEN_PATHS = ("/api/health", "/api/docs", "/api/redoc", "/api/openapi.json", "/api/docs-assets")


def guarded(path: str) -> bool:
    return path.startswith(("/api/", "/v1/")) and not path.startswith(OPEN_PATHS)


def owner_of(key: str) -> str:
    # Jobs record a digest of the key, never the key itself.
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def init_auth(app: Flask, settings: Settings) -> None:
    keys = tuple(k.encode() for k in settings.api_keys)

    @app.before_request
    def authenticate() -> None:
        g.owner = ""
        if not keys or not guarded(request.path):
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        given = token.strip().encode()
        # Compare with every key in constant time, so timing tells nothing about near misses.
        matches = [hmac.compare_digest(given, key) for key in keys]
        if scheme.lower() != "bearer" or not any(matches):
            raise Unauthorized("Send a valid API key as 'Authorization: Bearer <key>'.")
        g.owner = owner_of(token.strip())

    if settings.rate_limit:
        limiter = Limiter(
            key_func=lambda: g.get("owner") or get_remote_address(),
            app=app,
            storage_uri=settings.redis_url,
            default_limits=[settings.rate_limit],
            default_limits_exempt_when=lambda: not guarded(request.path),
            headers_enabled=True,
            key_prefix="wp:ratelimit",
        )
        app.extensions["whisper_pipeline_limiter"] = limiter
