"""What a hostile client found, against the real service with API keys on (gunicorn, Dramatiq
workers, a transcriber, Redis, RabbitMQ): tenants never share transcripts, and a poisoned
webhook beside healthy ones fails on its own schedule without touching theirs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.jobs import JobStore, State, new_task_id
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript
from tests.support.helpers import Receiver, wait_for
from tests.support.private_api import PrivateApi, private_api

ALICE, BOB, ADMIN = "alice-key", "bob-key", "admin-key"
PUBLIC_URL = "https://stt.example.com"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateApi]:
    with private_api(tmp_path_factory.mktemp("hostile"), "hostile", {
        "API_KEYS": f"{ALICE},{BOB}", "ADMIN_API_KEYS": ADMIN, "PUBLIC_URL": PUBLIC_URL,
        "TRANSCRIBER_PROCESSES": "1",
        "WEBHOOK_MAX_ATTEMPTS": "3", "WEBHOOK_SCHEDULE_SECONDS": "0,1,1", "WEBHOOK_SWEEP_SECONDS": "1",
        "RECONCILE_PERIOD_SECONDS": "1",
    }, processes=("web", "worker", "transcriber")) as running:
        yield running


def final(api: PrivateApi, key: str, task_id: str, timeout: float = 180) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/api/transcribe/async/status/{task_id}", key).json()
        return body if body["status"] in ("completed", "failed", "cancelled") else None

    return wait_for(done, timeout=timeout, interval=0.2)


def test_one_tenants_transcript_is_never_anothers_cache_hit(api: PrivateApi) -> None:
    first = api.upload(ALICE, language="en").json()
    assert first["cached"] is False
    assert final(api, ALICE, first["task_id"])["status"] == "completed"
    # Bob's upload of the very same recording is transcribed for Bob: nothing says Alice sent it.
    theirs = api.upload(BOB, language="en").json()
    assert theirs["cached"] is False and theirs["status"] == "queued", theirs
    done = final(api, BOB, theirs["task_id"])
    assert done["status"] == "completed" and done["cached"] is False
    # Each tenant hits their own entry.
    for key in (ALICE, BOB):
        again = api.upload(key, language="en").json()
        assert again["cached"] is True and again["status"] == "completed", (key, again)
    # And the statistics stay the admin's.
    assert api.get("/api/cache-stats", ALICE).status_code == 403
    stats = api.get("/api/cache-stats", ADMIN).json()
    assert stats["hits"] == 2 and stats["entries"] == 2, stats


def test_a_poisoned_webhook_fails_on_its_schedule_beside_healthy_ones(api: PrivateApi) -> None:
    receiver = Receiver([])
    try:
        refused = api.upload(ALICE, webhook_url=receiver.url, webhook_auth_header_name="X-Webhook-Token",
                             webhook_auth_header_value="tok\u2028en")
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "webhook_auth_header_value"
        # One recorded before that check existed: written as the API wrote jobs then.
        jobs = JobStore(api.redis, result_ttl=600)
        poisoned = new_task_id()
        jobs.create(poisoned, TranscribeOptions(), webhook_url=receiver.url, webhook_state="pending",
                    webhook_auth_header_name="X-Webhook-Token", webhook_auth_header_value="tok\u2028en")
        jobs.transition(poisoned, State.COMPLETED, result=Transcript(
            text="x", language="en", duration=1.0, segments=(Segment(id=0, start=0.0, end=1.0, text="x"),)))
        healthy = [api.upload(key, language="en", webhook_url=receiver.url, webhook_auth_header_name="X-Webhook-Token",
                              webhook_auth_header_value="s3cret").json()["task_id"] for key in (ALICE, BOB, ALICE)]
        owners = dict(zip(healthy, (ALICE, BOB, ALICE), strict=True))
        settled = wait_for(lambda: (jobs.get(poisoned).webhook_state != "pending"
                                    and all(jobs.get(t).webhook_state != "pending" for t in healthy)), timeout=180)
        assert settled
        job = jobs.get(poisoned)
        assert (job.webhook_state, job.webhook_attempts) == ("failed", 3)
        for task_id in healthy:
            webhook = api.get(f"/api/transcribe/async/status/{task_id}", owners[task_id]).json()["webhook"]
            assert webhook["state"] == "delivered", webhook
        bodies = [json.loads(body)["data"] for _, body, _ in receiver.requests]
        assert sorted(b["task_id"] for b in bodies) == sorted(healthy)
        assert all(b["result_url"] == f"{PUBLIC_URL}/api/transcribe/async/{b['task_id']}/result" for b in bodies)
        assert {h["x-webhook-token"] for h, _, _ in receiver.requests} == {"s3cret"}
        # The loop that serves every job kept running through it.
        log = api.service.log_path("worker").read_text(errors="replace")
        assert "housekeeping failed" not in log and "webhook sweep failed" not in log
    finally:
        receiver.close()
