"""Inputs at the edges and the owner's webhook redelivery, on the real Redis and
RabbitMQ through the app's test client: ids and cursors that could never be valid answer
404/400 (never a 503 from a Redis type error), webhook auth headers come from an allow-list,
WEBHOOK_SECRET is checked at start-up, and POST /api/transcribe/async/<id>/webhook delivers a
finished job's event again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook

from api import create_app
from api.state import state
from pipeline import keys, outbox, webhooks
from pipeline.jobs import JobStore, State, new_task_id
from pipeline.keys import WEBHOOKS_DUE_KEY
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Segment, Transcript
from tests.support.helpers import SPEECH_EN, Receiver
from tests.support.stack import WEBHOOK_SECRET

KEYS = ("edge-key-one", "edge-key-two")


@pytest.fixture
def app_client(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[FlaskClient]:
    app = create_app(replace(settings, upload_dir=tmp_path / "uploads", api_keys=KEYS,
                             webhook_allow_private=True, webhook_secret=WEBHOOK_SECRET))
    with app.app_context():
        yield app.test_client()


def auth(key: str = KEYS[0]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_job(client: FlaskClient, *, key: str = KEYS[0], webhook: str = "", final: State | None = State.COMPLETED,
             **fields: Any) -> str:
    """A job recorded as the API records one, owned by ``key``."""
    from api.auth import owner_of

    jobs: JobStore = state().jobs
    task_id = new_task_id()
    extra = {"webhook_url": webhook, "webhook_state": "pending"} if webhook else {}
    jobs.create(task_id, TranscribeOptions(), owner=owner_of(key), sha256="0" * 64, **extra, **fields)
    if final is State.COMPLETED:
        transcript = Transcript(text=" Hello.", language="en", duration=1.0,
                                segments=(Segment(id=0, start=0.0, end=1.0, text=" Hello."),))
        jobs.transition(task_id, State.COMPLETED, result=transcript, cached=False)
    elif final is not None:
        jobs.transition(task_id, final)
    return task_id


@pytest.mark.parametrize("bad", ["x", "abc:lease", "0" * 31, "0" * 33, "A" * 32, "%00", "wp:queued", "-1"])
def test_a_task_id_that_could_never_be_one_is_404_on_every_job_route(app_client: FlaskClient, bad: str,
                                                                     redis_client: redis.Redis) -> None:
    # Keys of other kinds under the names such an id would read: a type error if they were read.
    redis_client.set(keys.job_key(bad), "a string, not a hash")
    for method, path in (("GET", f"/api/transcribe/async/status/{bad}"),
                         ("GET", f"/api/transcribe/async/{bad}/result"),
                         ("GET", f"/api/transcribe/async/{bad}/events"),
                         ("DELETE", f"/api/transcribe/async/{bad}"),
                         ("POST", f"/api/transcribe/async/{bad}/webhook")):
        response = app_client.open(path, method=method, headers=auth())
        assert response.status_code == 404, (method, path, response.status_code, response.json)
        assert response.json["error"]["code"] == "not_found", response.json


def test_a_valid_id_of_an_unknown_job_is_404(app_client: FlaskClient) -> None:
    response = app_client.get(f"/api/transcribe/async/status/{new_task_id()}", headers=auth())
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


# Underscores, fullwidth, Arabic-Indic and superscript digits: float() takes most of them, Redis
# none, and a cursor Redis refuses once answered 503 as if Redis were down.
@pytest.mark.parametrize("cursor", ["nan", "inf", "-inf", "1e999", "-5", "abc", "(1", "", "1_000", "1_000.5",
                                    "\uff11\uff12\uff13", "\u0661\u0662\u0663", "\u00b9", " 1", "1\n",
                                    "0x10", "1" * 40])
def test_a_cursor_not_from_next_cursor_is_400(app_client: FlaskClient, cursor: str) -> None:
    response = app_client.get("/api/transcribe/async", query_string={"cursor": cursor}, headers=auth())
    assert response.status_code in (400, 422), response.json
    assert response.json["error"]["field"] == "cursor"


NOT_ASCII_NUMBERS = ["1_0", "\uff15", "\u0665", "\u00b2", "\u09e8", "0x5", "5\u00a0"]


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
@pytest.mark.parametrize(("where", "name"), [("query", "limit"), ("form", "beam_size"), ("form", "temperature"),
                                             ("form", "batch_size"), ("form", "min_speakers"),
                                             ("openai", "temperature"), ("openai", "max_speakers")])
def test_every_number_in_a_request_is_ascii_digits_or_an_error_naming_it(
        app_client: FlaskClient, where: str, name: str, value: str) -> None:
    if where == "query":
        response = app_client.get("/api/transcribe/async", query_string={name: value}, headers=auth())
    else:
        path = "/v1/audio/transcriptions" if where == "openai" else "/api/transcribe/async"
        extra = {"diarize": "true"} if "speakers" in name else {}
        with SPEECH_EN.open("rb") as fh:
            response = app_client.post(path, headers=auth(), data={"file": (fh, "speech.wav"), name: value, **extra})
    assert response.status_code in (400, 422), (response.status_code, response.json)
    assert response.json["error"]["field"] == name, response.json


def test_the_cursor_from_next_cursor_pages_on(app_client: FlaskClient) -> None:
    made = [make_job(app_client) for _ in range(3)]
    first = app_client.get("/api/transcribe/async", query_string={"limit": 2}, headers=auth()).json
    assert [j["task_id"] for j in first["jobs"]] == made[::-1][:2]
    rest = app_client.get("/api/transcribe/async", query_string={"limit": 2, "cursor": first["next_cursor"]},
                          headers=auth()).json
    assert [j["task_id"] for j in rest["jobs"]] == made[:1]


def test_a_header_outside_the_list_recorded_on_a_job_is_never_sent(app_client: FlaskClient) -> None:
    task_id = make_job(app_client, webhook="http://127.0.0.1:9/hook", webhook_auth_header_name="Host",
                       webhook_auth_header_value="internal.example")
    job = state().jobs.get(task_id)
    _, headers = webhooks.job_event(job, None, WEBHOOK_SECRET)
    assert "Host" not in headers and "internal.example" not in headers.values()


def test_the_owner_gets_a_finished_job_s_webhook_delivered_again(app_client: FlaskClient) -> None:
    receiver = Receiver()
    try:
        task_id = make_job(app_client, webhook=receiver.url)
        st = state()
        # Delivered once already, as the notify actor would.
        assert outbox.attempt(st, task_id) is not None  # type: ignore[arg-type]
        assert st.jobs.get(task_id).webhook_state == "delivered" and len(receiver.requests) == 1

        response = app_client.post(f"/api/transcribe/async/{task_id}/webhook", headers=auth())
        assert response.status_code == 202, response.json
        assert response.json == {"url": receiver.url, "state": "pending", "attempts": 0, "last_status": 200}
        assert st.redis.zscore(WEBHOOKS_DUE_KEY, task_id) is not None  # due now, in the outbox

        # The sweeper (or the notify message the route sent) delivers it, signed as before.
        made = outbox.sweep(st)  # type: ignore[arg-type]
        assert [(a.task_id, a.state) for a in made] == [(task_id, "delivered")]
        assert len(receiver.requests) == 2
        headers, body, _ = receiver.requests[1]
        assert Webhook(WEBHOOK_SECRET).verify(body, headers)["data"]["task_id"] == task_id
        assert receiver.requests[0][0]["webhook-id"] == headers["webhook-id"]  # the same event
        status = app_client.get(f"/api/transcribe/async/status/{task_id}", headers=auth()).json
        assert status["webhook"] == {"url": receiver.url, "state": "delivered", "attempts": 1, "last_status": 200}
    finally:
        receiver.close()


def test_redelivery_is_refused_for_a_job_not_final_or_without_a_webhook(app_client: FlaskClient) -> None:
    running = make_job(app_client, webhook="http://127.0.0.1:9/hook", final=None)
    response = app_client.post(f"/api/transcribe/async/{running}/webhook", headers=auth())
    assert response.status_code == 409 and "queued" in response.json["error"]["message"]
    silent = make_job(app_client)
    response = app_client.post(f"/api/transcribe/async/{silent}/webhook", headers=auth())
    assert response.status_code == 409 and "webhook_url" in response.json["error"]["message"]


def test_only_the_owner_may_ask_for_redelivery(app_client: FlaskClient) -> None:
    task_id = make_job(app_client, webhook="http://127.0.0.1:9/hook", final=State.FAILED)
    assert app_client.post(f"/api/transcribe/async/{task_id}/webhook", headers=auth(KEYS[1])).status_code == 404
    assert app_client.post(f"/api/transcribe/async/{new_task_id()}/webhook", headers=auth()).status_code == 404
    assert app_client.post(f"/api/transcribe/async/{task_id}/webhook").status_code == 401
    assert state().jobs.get(task_id).webhook_state == "pending"  # untouched by the refusals


def test_every_answer_says_nosniff_and_a_policy_fit_for_it(app_client: FlaskClient) -> None:
    import base64
    import hashlib
    import re

    task_id = make_job(app_client)
    answers = {
        "json": app_client.get(f"/api/transcribe/async/status/{task_id}", headers=auth()),
        "error": app_client.get("/api/transcribe/async/status/" + "0" * 32, headers=auth()),
        "unauthorised": app_client.get("/api/transcribe/async"),
        "no route": app_client.get("/nothing-here"),
        "srt": app_client.get(f"/api/transcribe/async/{task_id}/result?format=srt", headers=auth()),
        "text": app_client.get(f"/api/transcribe/async/{task_id}/result?format=text", headers=auth()),
        "openapi": app_client.get("/api/openapi.json"),
        "health": app_client.get("/api/health"),
        "asset": app_client.get("/assets/page.js"),
    }
    for what, response in answers.items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", what
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "sandbox" in policy, (what, policy)
        response.close()
    page = app_client.get("/")
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    for docs in ("/api/docs", "/api/redoc"):
        response = app_client.get(docs)
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        script_src = next(p for p in policy.split("; ") if p.startswith("script-src"))
        assert "unsafe-inline" not in script_src and "frame-ancestors 'none'" in policy
        # Each inline script the page holds is allowed by its hash, and nothing else inline.
        inline = re.findall(r"<script>(.*?)</script>", response.get_data(as_text=True), re.DOTALL)
        hashes = {f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline}
        assert set(script_src.split()[2:]) == hashes, (docs, script_src)


@pytest.mark.parametrize("public_url", ["", "https://stt.example.com/speech"])
def test_no_url_the_service_writes_comes_from_the_clients_host(
        settings: Settings, redis_client: redis.Redis, tmp_path: Path, public_url: str) -> None:
    app = create_app(replace(settings, upload_dir=tmp_path / "uploads", api_keys=KEYS, public_url=public_url,
                             webhook_allow_private=True))
    hostile = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "gopher",
               **auth()}
    with app.app_context(), SPEECH_EN.open("rb") as fh:
        client = app.test_client()
        accepted = client.post("/api/transcribe/async", headers=hostile,
                               data={"file": (fh, "speech.wav"), "webhook_url": "http://127.0.0.1:9/hook"})
        assert accepted.status_code == 202, accepted.json
        task_id = accepted.json["task_id"]
        status = client.get(f"/api/transcribe/async/status/{task_id}", headers=hostile).json
        listed = client.get("/api/transcribe/async", headers=hostile).json["jobs"][0]
        stored = state().jobs.get(task_id).result_url
    written = [accepted.json["status_url"], accepted.json["result_url"], status["status_url"],
               status["result_url"], listed["status_url"], listed["result_url"], stored]
    assert all("evil" not in url and "gopher" not in url for url in written), written
    assert accepted.json["status_url"] == f"{public_url}/api/transcribe/async/status/{task_id}"
    # The stored URL is what the signed webhook body carries.
    assert stored == f"{public_url}/api/transcribe/async/{task_id}/result"


@pytest.mark.parametrize(("scope", "keys", "hit"), [("client", KEYS, False), ("global", KEYS, True),
                                                    ("client", (), True)])
def test_cache_scope_says_whose_transcripts_an_upload_may_reuse(
        settings: Settings, redis_client: redis.Redis, tmp_path: Path, scope: str, keys: tuple[str, ...],
        hit: bool) -> None:
    """Another client's transcript of the same bytes: a hit only with CACHE_SCOPE=global, or
    with no keys at all (one client is everyone)."""
    import hashlib

    from api.auth import owner_of
    from pipeline.cache import scoped

    app = create_app(replace(settings, upload_dir=tmp_path / "uploads", api_keys=keys, cache_scope=scope))
    with app.app_context(), SPEECH_EN.open("rb") as fh:
        st = state()
        options = TranscribeOptions.parse({"language": "en"}, st.settings)
        transcript = Transcript(text=" Hello.", language="en", duration=1.0,
                                segments=(Segment(id=0, start=0.0, end=1.0, text=" Hello."),))
        digest = hashlib.sha256(SPEECH_EN.read_bytes()).hexdigest()
        # As the first key's job stored it.
        st.cache.put(scoped(digest, owner_of(KEYS[0]) if st.settings.cache_per_client else ""), options, transcript)
        answer = app.test_client().post("/api/transcribe/async", headers=auth(KEYS[1]) if keys else {},
                                        data={"file": (fh, "speech.wav"), "language": "en"})
    assert answer.status_code == 202, answer.json
    assert answer.json["cached"] is hit


@pytest.mark.parametrize("field", ["initial_prompt", "webhook_url", "hotwords"])
def test_a_form_field_too_large_is_a_413_naming_it_and_its_limit(app_client: FlaskClient, field: str) -> None:
    with SPEECH_EN.open("rb") as fh:
        response = app_client.post("/api/transcribe/async", headers=auth(),
                                   data={"language": "en", field: "x" * 1_000_000, "file": (fh, "speech.wav")})
    assert response.status_code == 413, response.json
    error = response.json["error"]
    assert error["field"] == field and "500 kB a field" in error["message"], error
    assert "MB" not in error["message"]
