"""Who is asking: API keys, admin keys, and the one rate limit per client.

With API_KEYS or ADMIN_API_KEYS set, every /api and /v1 route but health and the docs needs
``Authorization: Bearer <key>``; each key owns the jobs it submits and sees no other's. Admin
keys (ADMIN_API_KEYS) may also clear the cache, read its statistics and /api/gpu-status, and
see every client's jobs. With no key set at all the service is open, as it always was, and
every caller may do everything.

A client, for the limits here and in ``api.limits``, is a key (by its digest), or the caller's
address when no keys are set. RATE_LIMIT (for example ``60/minute;1000/day``) is one budget per
client across every guarded route, counted in Redis so that every API process and host shares
it; a request whose key is wrong is counted against its address. FAILED_AUTH_LIMIT (default
20/minute) is a budget of failed authentications per address of its own, set or not RATE_LIMIT,
so guessing keys is throttled by default.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Request, g, request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from pipeline.errors import Forbidden, TooManyRequests, Unauthorized
from pipeline.settings import Settings

log = logging.getLogger(__name__)

OPEN_PATHS = ("/api/health", "/api/docs", "/api/redoc", "/api/openapi.json", "/api/docs-assets")
F = TypeVar("F", bound=Callable[..., Any])


def guarded(path: str) -> bool:
    return path.startswith(("/api/", "/v1/")) and not path.startswith(OPEN_PATHS)


def owner_of(key: str) -> str:
    # Jobs record a digest of the key, never the key itself.
    return hashlib.sha256(key.encode()).hexdigest()[:24]


# A browser cannot set headers on a WebSocket: OpenAI's realtime API takes the key as one of
# the offered subprotocols instead, and so does /v1/realtime.
KEY_SUBPROTOCOL = "openai-insecure-api-key."


def bearer(req: Request) -> str | None:
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if req.headers.get("Upgrade", "").lower() == "websocket":
        for offered in req.headers.get("Sec-WebSocket-Protocol", "").split(","):
            if offered.strip().startswith(KEY_SUBPROTOCOL):
                return offered.strip().removeprefix(KEY_SUBPROTOCOL) or None
    return None


def same_secret(given: str | None, secret: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


def client() -> str:
    """The client asking, as the limits count it."""
    return str(g.get("client") or f"addr:{request.remote_addr or 'unknown'}")


def is_admin() -> bool:
    return bool(g.get("is_admin"))


def require_admin(what: str) -> None:
    if not is_admin():
        raise Forbidden(f"Only an admin key (ADMIN_API_KEYS) may {what}.")


def admin_only(what: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @wraps(view)
        def guarded_view(*args: Any, **kwargs: Any) -> Any:
            require_admin(what)
            return view(*args, **kwargs)

        return guarded_view  # type: ignore[return-value]

    return decorate


class RateLimit:
    """RATE_LIMIT, once per client whatever the route (fixed windows, as flask-limiter counts)."""

    def __init__(self, spec: str, redis_url: str) -> None:
        self.spec = spec
        self.items: list[RateLimitItem] = parse_many(spec)
        self.limiter = FixedWindowRateLimiter(storage_from_string(redis_url))

    def hit(self, who: str) -> None:
        for item in self.items:
            if not self.limiter.hit(item, "wp-ratelimit", who):
                reset = self.limiter.get_window_stats(item, "wp-ratelimit", who).reset_time
                raise TooManyRequests(
                    f"Too many requests: this client may make {item} (RATE_LIMIT={self.spec}), "
                    f"across every route.", limit="RATE_LIMIT", retry_after=math.ceil(reset - time.time()))


class FailedAuthBudget:
    """FAILED_AUTH_LIMIT: failed authentications per address, RATE_LIMIT or not. Once spent, the
    address is refused before its key is even compared, so that a guesser learns nothing more
    until the window ends (a right key from it waits too: that is what makes it a throttle)."""

    NAMESPACE = "wp-failed-auth"

    def __init__(self, spec: str, redis_url: str) -> None:
        self.spec = spec
        self.items: list[RateLimitItem] = parse_many(spec)
        self.limiter = FixedWindowRateLimiter(storage_from_string(redis_url))

    def check(self, who: str) -> None:
        for item in self.items:
            if not self.limiter.test(item, self.NAMESPACE, who):
                reset = self.limiter.get_window_stats(item, self.NAMESPACE, who).reset_time
                raise TooManyRequests(
                    f"Too many failed authentications from this address: at most {item} "
                    f"(FAILED_AUTH_LIMIT={self.spec}); try again later with a valid key.",
                    limit="FAILED_AUTH_LIMIT", retry_after=max(1, math.ceil(reset - time.time())))

    def fail(self, who: str) -> None:
        for item in self.items:
            self.limiter.hit(item, self.NAMESPACE, who)


def address() -> str:
    return f"addr:{request.remote_addr or 'unknown'}"


def init_auth(app: Flask, settings: Settings) -> None:
    # Each key once, admin winning where a key is listed in both.
    keys = {key: False for key in settings.api_keys} | {key: True for key in settings.admin_api_keys}
    rate = RateLimit(settings.rate_limit, settings.redis_url) if settings.rate_limit else None
    spec = settings.failed_auth_limit
    failures = (FailedAuthBudget(spec, settings.redis_url)
                if (keys or settings.metrics_token) and spec and spec.lower() != "off" else None)

    def find(token: str | None) -> str | None:
        # Compared with every key in constant time, so timing tells nothing about near misses.
        matches = [key for key in keys if same_secret(token or "", key)]
        return matches[0] if token and matches else None

    def failed(who: str) -> None:
        if failures is not None:
            failures.fail(who)
        if rate is not None:
            rate.hit(who)

    app.extensions["whisper_pipeline.auth"] = Auth(find=find, failures=failures, failed=failed)

    @app.before_request
    def authenticate() -> None:
        g.owner = ""
        g.client = address()
        g.is_admin = not keys
        if not guarded(request.path):
            return
        if keys:
            if failures is not None:
                failures.check(g.client)
            token = bearer(request)
            key = find(token)
            if key is None:
                failed(g.client)
                raise Unauthorized("Send a valid API key as 'Authorization: Bearer <key>'.")
            g.owner = owner_of(key)
            g.client = f"key:{g.owner}"
            g.is_admin = keys[key]
        if rate is not None:
            rate.hit(g.client)


@dataclass(frozen=True)
class Auth:
    """What routes outside /api and /v1 (``/metrics``) need to check a key the same way."""

    find: Callable[[str | None], str | None]
    failures: FailedAuthBudget | None
    failed: Callable[[str], None]


def auth_of(app: Flask) -> Auth:
    found: Auth = app.extensions["whisper_pipeline.auth"]
    return found


def log_access(settings: Settings) -> None:
    """One line at start-up that says who may use the API."""
    keys = set(settings.api_keys) | set(settings.admin_api_keys)
    if keys:
        log.info("API keys required: %d keys, %d of them admin keys (ADMIN_API_KEYS); /metrics %s",
                 len(keys), len(set(settings.admin_api_keys)),
                 "needs an admin key or METRICS_TOKEN" if settings.metrics_token else "needs an admin key")
    else:
        log.warning("No API_KEYS or ADMIN_API_KEYS set: the API is open, and anyone who reaches it may "
                    "submit jobs, see every job and clear the cache")
