"""Per-client limits against the real API (gunicorn's gevent worker, Redis, RabbitMQ): open
streams, active jobs, audio seconds per day, the one rate limit across routes, and which models
a request may name. Every refusal is a JSON 429 (422 for a model) that names its setting, with
Retry-After, and leaves nothing of the refused upload on disk.

No worker runs here: jobs stay queued, so they stay active and their streams stay open.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.helpers import SPEECH_EN, wait_for
from tests.support.private_api import PrivateApi, SseClient, private_api

KEYS = [f"client-key-{i}" for i in range(8)]
SPEECH_SECONDS = 5.9  # tests/fixtures/speech_en.wav


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateApi]:
    with private_api(tmp_path_factory.mktemp("limits"), "limits", {
        "API_KEYS": ",".join(KEYS),
        "MAX_OPEN_STREAMS_PER_CLIENT": "3",
        "MAX_ACTIVE_JOBS_PER_CLIENT": "2",
        # Four uploads of the fixture fit; a fifth does not (no test but the audio one makes four).
        "MAX_AUDIO_SECONDS_PER_DAY": str(int(SPEECH_SECONDS * 4.5)),
        "SYNC_TIMEOUT_SECONDS": "2",
        # A closed stream's place is freed when a write to it fails: within seconds, not 30.
        "STREAM_KEEPALIVE_SECONDS": "1",
        "MODELS": "tiny.en,base,small",
        "MAX_LIVE_SESSIONS_PER_CLIENT": "2",
        # No live worker runs here: a session waits for one, and so stays open, this long.
        "LIVE_CLAIM_TIMEOUT_SECONDS": "120",
    }) as running:
        yield running


def assert_refused(response: requests.Response, code: str, setting: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["limit"] == setting, error
    assert setting in error["message"]
    assert int(response.headers["Retry-After"]) > 0


def test_open_streams_per_client(api: PrivateApi) -> None:
    one, two = KEYS[0], KEYS[1]
    task_id = api.upload(one).json()["task_id"]
    streams = [SseClient(api.url, f"/api/transcribe/async/{task_id}/events", one) for _ in range(3)]
    try:
        assert [s.read_headers() for s in streams] == [200, 200, 200]
        for s in streams:
            s.read_until(b"event: status", timeout=10)
        streams[0].read_until(b": keep-alive", timeout=5)  # every STREAM_KEEPALIVE_SECONDS while quiet
        refused = api.get(f"/api/transcribe/async/{task_id}/events", one, stream=True)
        assert_refused(refused, "too_many_streams", "MAX_OPEN_STREAMS_PER_CLIENT")
        # Another client is counted apart.
        other = api.upload(two).json()["task_id"]
        theirs = SseClient(api.url, f"/api/transcribe/async/{other}/events", two)
        assert theirs.read_headers() == 200
        theirs.close()
        # A stream that ends gives its slot back.
        streams.pop().close()

        def reopened() -> int:
            again = SseClient(api.url, f"/api/transcribe/async/{task_id}/events", one)
            status = again.read_headers()
            streams.append(again)
            return status

        deadline = time.monotonic() + 60
        while (status := reopened()) != 200 and time.monotonic() < deadline:
            streams.pop().close()
            time.sleep(0.5)  # the server learns of the closed socket at its next writes
        assert status == 200
    finally:
        for s in streams:
            s.close()


def test_active_jobs_per_client_are_refused_before_the_upload_is_kept(api: PrivateApi) -> None:
    key = KEYS[2]
    first, second = api.upload(key), api.upload(key)
    assert first.status_code == 202 and second.status_code == 202
    before = api.stored()
    refused = api.upload(key)
    assert_refused(refused, "too_many_active_jobs", "MAX_ACTIVE_JOBS_PER_CLIENT")
    assert api.stored() == before, "a refused upload left a file behind"
    # By url too: refused before anything is fetched.
    assert_refused(api.post("/api/transcribe/async", key, data={"url": "http://127.0.0.1:9/a.wav"}),
                   "too_many_active_jobs", "MAX_ACTIVE_JOBS_PER_CLIENT")
    # Another client is not held back; a finished (here: cancelled) job frees a place.
    assert api.upload(KEYS[3]).status_code == 202
    headers = {"Authorization": f"Bearer {key}"}
    assert requests.delete(f"{api.url}/api/transcribe/async/{first.json()['task_id']}", headers=headers,
                           timeout=30).status_code == 202
    assert api.upload(key).status_code == 202


def test_an_invalid_upload_does_not_take_an_active_job_place(api: PrivateApi) -> None:
    key = KEYS[4]
    for _ in range(3):
        refused = api.upload(key, model="large-v3")
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "model"
    assert api.upload(key).status_code == 202
    assert api.upload(key).status_code == 202


def test_audio_seconds_per_day(api: PrivateApi) -> None:
    key = KEYS[5]
    for _ in range(4):
        # Fresh jobs: the active-jobs limit (2) is not what is tested here.
        accepted = api.upload(key, language="en")
        assert accepted.status_code == 202, accepted.text
        requests.delete(f"{api.url}/api/transcribe/async/{accepted.json()['task_id']}",
                        headers={"Authorization": f"Bearer {key}"}, timeout=30)
    before = api.stored()
    refused = api.upload(key)
    assert_refused(refused, "audio_quota_exceeded", "MAX_AUDIO_SECONDS_PER_DAY")
    message = refused.json()["error"]["message"]
    assert "This recording is 6 s long" in message and "00:00 UTC" in message
    # Retry-After points at the next midnight UTC.
    now = time.time()
    assert 0 < int(refused.headers["Retry-After"]) <= 86400 - int(now % 86400) + 1
    assert api.stored() == before
    # Counted per client.
    assert api.upload(KEYS[6]).status_code == 202


def test_rate_limit_is_one_budget_across_routes_and_counts_failed_keys(tmp_path: Path) -> None:
    with private_api(tmp_path, "ratelimit", {"API_KEYS": "rate-one,rate-two", "RATE_LIMIT": "6/minute"}) as api:
        unknown = "0" * 32
        routes = ["/api/transcribe/async", f"/api/transcribe/async/status/{unknown}", "/api/transcribe/async?limit=3"]
        answers = [api.get(routes[i % len(routes)], "rate-one").status_code for i in range(6)]
        assert 429 not in answers, answers
        refused = api.get(f"/api/transcribe/async/{unknown}/result", "rate-one")
        assert_refused(refused, "too_many_requests", "RATE_LIMIT")
        assert api.upload("rate-one").status_code == 429  # uploads are in the same budget
        assert api.get("/api/transcribe/async", "rate-two").status_code == 200
        assert api.get("/api/health").status_code == 200  # never limited
        # Guessing keys: each failure counts against the address, and then it is refused outright.
        guesses = [api.get("/api/transcribe/async", f"guess-{i}").status_code for i in range(8)]
        assert guesses[:6] == [401] * 6 and guesses[6:] == [429, 429], guesses


def test_models_a_request_may_name(api: PrivateApi) -> None:
    key = KEYS[7]
    for model in ("large-v3", "/etc/passwd", "../models/base", "Systran/faster-whisper-small"):
        refused = api.upload(key, model=model)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["field"] == "model" and "tiny.en, base, small" in error["message"]
    # The OpenAI route maps whisper-1 to the default and checks any other name the same way.
    refused = api.upload(key, to="/v1/audio/transcriptions", model="whisper-large")
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "model"
    waited = api.upload(key, to="/v1/audio/transcriptions", model="whisper-1")
    assert waited.status_code == 504, waited.text  # accepted, and no worker runs here
    assert api.upload(key, model="small").status_code == 202


def test_limits_are_settings_with_sane_defaults() -> None:
    from pipeline.errors import SettingsError
    from pipeline.settings import Settings

    s = Settings.from_env({})
    assert (s.max_open_streams_per_client, s.max_active_jobs_per_client, s.max_audio_seconds_per_day) == (100, 100, 0)
    assert s.stream_max_seconds == 3600 and s.sync_timeout_seconds == 300 and s.fetch_timeout_seconds == 300
    assert s.stream_keepalive_seconds == 15
    assert s.allowed_models == ("tiny.en", "base")
    assert s.admin_api_keys == () and s.metrics_token == ""
    parsed = Settings.from_env({"ADMIN_API_KEYS": "a, b", "MAX_AUDIO_SECONDS_PER_DAY": "7200", "MODELS": "small",
                                "DEFAULT_MODEL": "base", "METRICS_TOKEN": "t", "PROXY_HOPS": "1"})
    assert parsed.admin_api_keys == ("a", "b") and parsed.max_audio_seconds_per_day == 7200
    assert parsed.allowed_models == ("small", "base") and parsed.metrics_token == "t" and parsed.proxy_hops == 1
    for name in ("MAX_OPEN_STREAMS_PER_CLIENT", "MAX_ACTIVE_JOBS_PER_CLIENT", "MAX_AUDIO_SECONDS_PER_DAY",
                 "STREAM_MAX_SECONDS", "STREAM_KEEPALIVE_SECONDS", "FETCH_TIMEOUT_SECONDS"):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: "-1"})


def test_speech_fixture_is_as_long_as_the_limits_assume() -> None:
    from pipeline import media

    duration = media.probe(SPEECH_EN).duration
    assert duration is not None and abs(duration - SPEECH_SECONDS) < 0.1


def test_live_sessions_per_client_and_their_keys(api: PrivateApi) -> None:
    """MAX_LIVE_SESSIONS_PER_CLIENT refuses the upgrade itself (a JSON 429); a key goes as the
    Authorization header or, as browsers must, as OpenAI's key subprotocol."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = api.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"

    def session(key: str | None = None, *, subprotocol: bool = False) -> Any:
        if subprotocol:
            return connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{key}"],  # type: ignore[list-item]
                           open_timeout=10)
        return connect(url, additional_headers={"Authorization": f"Bearer {key}"} if key else {}, open_timeout=10)

    with pytest.raises(InvalidStatus) as no_key:
        session()
    assert no_key.value.response.status_code == 401
    one, two = KEYS[2], KEYS[3]
    first = session(one)
    second = session(one, subprotocol=True)
    try:
        assert second.subprotocol == "realtime"
        for ws in (first, second):
            assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        with pytest.raises(InvalidStatus) as refused:
            session(one)
        response = refused.value.response
        assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
        error = json.loads(response.body)["error"]
        assert error["code"] == "too_many_live_sessions" and error["limit"] == "MAX_LIVE_SESSIONS_PER_CLIENT"
        with session(two) as theirs:  # another client is counted apart
            assert json.loads(theirs.recv(timeout=10))["type"] == "session.created"
        first.close()  # a closed session gives its place back
        with wait_for(lambda: _opened(session, one), timeout=30) as again:
            assert json.loads(again.recv(timeout=10))["type"] == "session.created"
    finally:
        first.close()
        second.close()


def _opened(session: Any, key: str) -> Any:
    from websockets.exceptions import InvalidStatus

    try:
        return session(key)
    except InvalidStatus:
        return None
