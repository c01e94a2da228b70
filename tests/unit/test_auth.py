"""api/auth.py: API keys, admin keys, the rate limit per client and the failed-authentication budget
(the limits counted in the limits library's in-memory storage, not Redis)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from flask import Flask, Request, g
from werkzeug.test import EnvironBuilder, TestResponse

from api.auth import (
    FailedAuthBudget,
    RateLimit,
    admin_only,
    auth_of,
    bearer,
    client,
    guarded,
    init_auth,
    owner_of,
    same_secret,
)
from api.errors import register_error_handlers
from pipeline.errors import Forbidden, TooManyRequests
from pipeline.settings import Settings

USER, ADMIN = "user-key-0123456789", "admin-key-0123456789"


def request_with(headers: dict[str, str]) -> Request:
    return Request(EnvironBuilder(headers=list(headers.items())).get_environ())


def error_of(answer: TestResponse) -> dict[str, Any]:
    body: dict[str, Any] = answer.get_json()
    return dict(body["error"])


def app_with(**settings: Any) -> Flask:
    app = Flask(__name__)
    init_auth(app, Settings(redis_url="memory://", **settings))
    register_error_handlers(app)

    def who() -> dict[str, Any]:
        return {"owner": g.owner, "client": client(), "admin": g.is_admin}

    app.add_url_rule("/api/whoami", "whoami", who)
    app.add_url_rule("/api/health", "health", who)
    app.add_url_rule("/", "page", who)
    app.add_url_rule("/api/admin", "admin", admin_only("do admin things")(who))
    return app


@pytest.mark.parametrize(("path", "expected"), [
    ("/api/transcribe/async", True), ("/v1/audio/transcriptions", True), ("/api/gpu-status", True),
    ("/api/health", False), ("/api/docs/", False), ("/api/openapi.json", False), ("/api/docs-assets/x.js", False),
    ("/", False), ("/metrics", False), ("/apifoo", False),
])
def test_only_api_and_v1_routes_but_health_and_the_docs_are_guarded(path: str, expected: bool) -> None:
    assert guarded(path) is expected


def test_a_key_is_known_by_a_short_digest_never_by_itself() -> None:
    owner = owner_of(USER)
    assert owner == hashlib.sha256(USER.encode()).hexdigest()[:24]
    assert USER not in owner and owner != owner_of(ADMIN)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Authorization": f"Bearer {USER}"}, USER),
    ({"Authorization": f"bearer   {USER}  "}, USER),
    ({"Authorization": "Bearer "}, None),
    ({"Authorization": f"Basic {USER}"}, None),
    ({}, None),
    # A browser's WebSocket offers the key as a subprotocol; only on an upgrade is it read.
    ({"Upgrade": "websocket", "Sec-WebSocket-Protocol": f"realtime, openai-insecure-api-key.{USER}"}, USER),
    ({"Upgrade": "websocket", "Sec-WebSocket-Protocol": "realtime, openai-insecure-api-key."}, None),
    ({"Sec-WebSocket-Protocol": f"openai-insecure-api-key.{USER}"}, None),
])
def test_the_key_is_read_from_a_bearer_header_or_a_websockets_subprotocol(headers: dict[str, str],
                                                                          expected: str | None) -> None:
    assert bearer(request_with(headers)) == expected


def test_same_secret_needs_the_exact_secret() -> None:
    assert same_secret("s3cret", "s3cret")
    assert not same_secret("s3cre", "s3cret") and not same_secret(None, "s3cret") and not same_secret("", "s3cret")


def test_the_rate_limit_refuses_the_hit_over_budget_naming_the_setting() -> None:
    limit = RateLimit("2/minute", "memory://")
    limit.hit("key:a")
    limit.hit("key:a")
    limit.hit("key:b")  # another client's budget is its own
    with pytest.raises(TooManyRequests) as caught:
        limit.hit("key:a")
    assert caught.value.limit == "RATE_LIMIT" and "RATE_LIMIT=2/minute" in caught.value.message
    assert 1 <= caught.value.retry_after <= 60
    assert caught.value.headers == {"Retry-After": str(caught.value.retry_after)}


def test_failed_authentications_are_counted_only_when_they_fail() -> None:
    budget = FailedAuthBudget("2/minute", "memory://")
    for _ in range(5):
        budget.check("addr:1")  # checking spends nothing
    budget.fail("addr:1")
    budget.check("addr:1")
    budget.fail("addr:1")
    with pytest.raises(TooManyRequests) as caught:
        budget.check("addr:1")
    assert caught.value.limit == "FAILED_AUTH_LIMIT" and caught.value.retry_after >= 1
    budget.check("addr:2")


def test_with_no_keys_everyone_is_an_admin_counted_by_address() -> None:
    answer = app_with().test_client().get("/api/admin", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert answer.json == {"owner": "", "client": "addr:10.1.2.3", "admin": True}
    assert auth_of(app_with()).failures is None  # nothing to guess, nothing to throttle


def test_a_key_owns_its_requests_and_only_an_admin_key_is_an_admin() -> None:
    client_ = app_with(api_keys=(USER,), admin_api_keys=(ADMIN,)).test_client()
    user = client_.get("/api/whoami", headers={"Authorization": f"Bearer {USER}"})
    assert user.json == {"owner": owner_of(USER), "client": f"key:{owner_of(USER)}", "admin": False}
    refused = client_.get("/api/admin", headers={"Authorization": f"Bearer {USER}"})
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
    assert "do admin things" in error_of(refused)["message"]
    admin = client_.get("/api/admin", headers={"Authorization": f"Bearer {ADMIN}"})
    assert admin.status_code == 200 and admin.get_json()["admin"] is True


def test_a_key_listed_as_both_user_and_admin_is_an_admin() -> None:
    client_ = app_with(api_keys=(ADMIN,), admin_api_keys=(ADMIN,)).test_client()
    assert client_.get("/api/admin", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_without_a_valid_key_a_guarded_route_is_401_and_open_routes_are_not() -> None:
    client_ = app_with(api_keys=(USER,)).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {USER}x"}):
        answer = client_.get("/api/whoami", headers=headers)
        assert answer.status_code == 401 and error_of(answer)["code"] == "unauthorized"
    assert client_.get("/api/health").json == {"owner": "", "client": "addr:127.0.0.1", "admin": False}
    assert client_.get("/").status_code == 200


def test_spent_failed_authentications_refuse_even_the_right_key_from_that_address() -> None:
    client_ = app_with(api_keys=(USER,), failed_auth_limit="2/minute").test_client()
    for _ in range(2):
        assert client_.get("/api/whoami", headers={"Authorization": "Bearer guess"}).status_code == 401
    throttled = client_.get("/api/whoami", headers={"Authorization": f"Bearer {USER}"})
    assert throttled.status_code == 429 and error_of(throttled)["limit"] == "FAILED_AUTH_LIMIT"
    elsewhere = client_.get("/api/whoami", headers={"Authorization": f"Bearer {USER}"},
                            environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert elsewhere.status_code == 200


def test_failed_auth_limit_off_turns_the_budget_off() -> None:
    assert auth_of(app_with(api_keys=(USER,), failed_auth_limit="off")).failures is None
    assert auth_of(app_with(api_keys=(USER,), failed_auth_limit="OFF")).failures is None
    assert auth_of(app_with(metrics_token="t" * 32)).failures is not None  # a token can be guessed too


def test_the_rate_limit_counts_a_wrong_key_against_its_address() -> None:
    client_ = app_with(api_keys=(USER,), rate_limit="2/minute", failed_auth_limit="off").test_client()
    assert client_.get("/api/whoami", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client_.get("/api/whoami", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client_.get("/api/whoami", headers={"Authorization": "Bearer wrong"}).status_code == 429
    # The key's own budget is untouched by what its address spent.
    assert client_.get("/api/whoami", headers={"Authorization": f"Bearer {USER}"}).status_code == 200


def test_forbidden_names_what_only_an_admin_may_do() -> None:
    app = app_with(api_keys=(USER,))
    with app.test_request_context("/api/whoami"):
        g.is_admin = False
        with pytest.raises(Forbidden, match="may clear the cache"):
            admin_only("clear the cache")(lambda: None)()
