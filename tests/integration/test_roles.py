"""Roles against the real API: what only an admin key may do, /metrics behind METRICS_TOKEN, and a
service with no keys that stays open and says so when it starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.private_api import PrivateApi, private_api

USER, OTHER, ADMIN = "user-key", "other-user-key", "admin-key"
METRICS_TOKEN = "scrape-token"
ADMIN_ONLY = [("get", "/api/cache-stats"), ("post", "/api/cache/clear"), ("get", "/api/gpu-status"),
              ("get", "/api/transcribe/async?all=true")]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateApi]:
    with private_api(tmp_path_factory.mktemp("roles"), "roles", {
        "API_KEYS": f"{USER},{OTHER}", "ADMIN_API_KEYS": ADMIN, "METRICS_TOKEN": METRICS_TOKEN,
    }) as running:
        yield running


def call(api: PrivateApi, method: str, path: str, key: str | None) -> requests.Response:
    response: requests.Response = getattr(api, method)(path, key)
    return response


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
def test_only_an_admin_key_may_use_the_operators_routes(api: PrivateApi, method: str, path: str) -> None:
    refused = call(api, method, path, USER)
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "forbidden" and "ADMIN_API_KEYS" in error["message"]
    assert call(api, method, path, None).status_code == 401
    allowed = call(api, method, path, ADMIN)
    assert allowed.status_code == 200, allowed.text


def test_an_admin_sees_and_lists_every_clients_jobs(api: PrivateApi) -> None:
    mine = api.upload(USER).json()["task_id"]
    theirs = api.upload(OTHER).json()["task_id"]
    admins = api.upload(ADMIN).json()["task_id"]
    # A user sees only their own job, and their listing holds only it, even asking for all.
    assert api.get(f"/api/transcribe/async/status/{theirs}", USER).status_code == 404
    assert api.get(f"/api/transcribe/async/status/{admins}", USER).status_code == 404
    listed = [j["task_id"] for j in api.get("/api/transcribe/async", USER).json()["jobs"]]
    assert mine in listed and theirs not in listed and admins not in listed
    # The admin opens anyone's job, and with all=true lists every client's, newest first, by pages.
    for task_id in (mine, theirs):
        assert api.get(f"/api/transcribe/async/status/{task_id}", ADMIN).json()["task_id"] == task_id
    own = [j["task_id"] for j in api.get("/api/transcribe/async", ADMIN).json()["jobs"]]
    assert own == [admins]
    everyone = api.get("/api/transcribe/async?all=true&limit=100", ADMIN).json()
    assert [j["task_id"] for j in everyone["jobs"]][:3] == [admins, theirs, mine]
    first = api.get("/api/transcribe/async?all=true&limit=2", ADMIN).json()
    assert [j["task_id"] for j in first["jobs"]] == [admins, theirs] and first["next_cursor"]
    rest = api.get(f"/api/transcribe/async?all=true&limit=2&cursor={first['next_cursor']}", ADMIN).json()
    assert [j["task_id"] for j in rest["jobs"]][:1] == [mine]
    # An admin may cancel another client's job.
    deleted = requests.delete(f"{api.url}/api/transcribe/async/{theirs}",
                              headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert deleted.status_code == 202


def test_metrics_need_the_metrics_token(api: PrivateApi) -> None:
    for key in (None, USER, "wrong-token"):
        refused = api.get("/metrics", key)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    scraped = api.get("/metrics", METRICS_TOKEN)
    assert scraped.status_code == 200 and scraped.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE" in scraped.text
    assert api.get("/metrics", ADMIN).status_code == 200  # an admin key reads them too


def test_the_start_up_log_names_the_keys(api: PrivateApi) -> None:
    lines = [line for line in api.log().splitlines() if "API keys required" in line]
    assert lines and "3 keys, 1 of them admin keys" in lines[0] and "an admin key or METRICS_TOKEN" in lines[0]


def test_with_no_keys_the_service_stays_open_and_says_so(tmp_path: Path) -> None:
    with private_api(tmp_path, "open", {}) as api:
        for method, path in ADMIN_ONLY:
            assert call(api, method, path, None).status_code == 200, path
        assert api.get("/metrics").status_code == 200
        task_id = api.upload().json()["task_id"]
        assert api.get(f"/api/transcribe/async/status/{task_id}").status_code == 200
        warnings = [line for line in api.log().splitlines() if "the API is open" in line]
        assert len(warnings) == 1, api.log()[-2000:]
        assert "API_KEYS" in warnings[0]


def test_with_keys_metrics_need_an_admin_key_and_failed_keys_are_throttled(tmp_path: Path) -> None:
    """With keys on and no METRICS_TOKEN, /metrics is for admin keys only. Failed
    authentications, /metrics' included, have a budget per address of their own (RATE_LIMIT is
    unset here): once spent, the address is refused outright, a right key included."""
    with private_api(tmp_path, "keys-metrics", {"API_KEYS": USER, "ADMIN_API_KEYS": ADMIN,
                                                "FAILED_AUTH_LIMIT": "6/minute"}) as api:
        assert api.get("/metrics", ADMIN).status_code == 200
        for key in (None, USER):
            refused = api.get("/metrics", key)
            assert refused.status_code == 401 and "ADMIN_API_KEYS" in refused.json()["error"]["message"]
        assert api.get("/api/transcribe/async", USER).status_code == 200
        guesses = [api.get("/api/transcribe/async", f"guess-{i}").status_code for i in range(6)]
        assert guesses == [401] * 4 + [429] * 2, guesses
        refused = api.get("/api/transcribe/async", USER)
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["limit"] == "FAILED_AUTH_LIMIT" and "FAILED_AUTH_LIMIT" in error["message"]
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert api.get("/metrics", ADMIN).status_code == 429
        assert api.get("/api/health").status_code == 200  # never limited
