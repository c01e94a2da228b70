"""api/serializers.py: the JSON views of a job (accepted, summary, status), on a Flask app with the
transcribe routes and a stand-in for the job store's three reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

import pytest
from flask import Flask

from api import serializers, transcribe
from api.state import ApiState, init_state
from pipeline.jobs import Job, State
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Redaction, Segment, Speaker, Transcript

TASK_ID = "0123456789abcdef0123456789abcdef"
CREATED = 1_700_000_000.25


@dataclass
class Reads:
    """What ``serializers.status`` reads of the store besides the job."""

    position: int = 0
    live: list[Segment] = field(default_factory=list)
    transcript: Transcript | None = None

    def queue_position(self, task_id: str) -> int:
        return self.position

    def segments(self, task_id: str) -> list[Segment]:
        return self.live

    def result(self, task_id: str) -> Transcript | None:
        return self.transcript


def app_with(public_url: str = "") -> Flask:
    app = Flask(__name__)
    app.register_blueprint(transcribe.bp)
    none = cast(Any, None)
    init_state(app, ApiState(settings=Settings(public_url=public_url), redis=none, jobs=none, cache=none,
                             broker=none, hub=none, limits=none, storage=none))
    return app


@pytest.fixture
def in_app() -> Iterator[None]:
    with app_with().test_request_context():
        yield


def job(status: State = State.QUEUED, **fields: Any) -> Job:
    return Job(task_id=TASK_ID, status=status, stage=status.value, progress=0.123456, created_at=CREATED,
               options=TranscribeOptions(), **fields)


def test_iso_is_utc_with_a_z_and_none_stays_none() -> None:
    assert serializers.iso(CREATED) == "2023-11-14T22:13:20.250000Z"
    assert serializers.iso(0) == "1970-01-01T00:00:00Z"
    assert serializers.iso(None) is None


def test_accepted_points_at_the_jobs_routes(in_app: None) -> None:
    assert serializers.accepted(job(cached=True)) == {
        "task_id": TASK_ID, "status": "queued", "cached": True,
        "status_url": f"/api/transcribe/async/status/{TASK_ID}",
        "result_url": f"/api/transcribe/async/{TASK_ID}/result",
    }


def test_with_public_url_every_url_is_absolute_under_it() -> None:
    with app_with("https://stt.example.com").test_request_context(headers={"Host": "evil.example"}):
        body = serializers.accepted(job())
    assert body["status_url"] == f"https://stt.example.com/api/transcribe/async/status/{TASK_ID}"


def test_a_summary_rounds_progress_and_falls_back_to_the_asked_language(in_app: None) -> None:
    asked = replace(TranscribeOptions(), language="de")
    body = serializers.summary(replace(job(State.FAILED, finished_at=CREATED + 10, filename="a.wav",
                                           error={"code": "x", "message": "y"}), options=asked))
    assert body["progress"] == 0.1235 and body["language"] == "de"
    assert (body["created_at"], body["finished_at"]) == ("2023-11-14T22:13:20.250000Z", "2023-11-14T22:13:30.250000Z")
    assert body["error"] == {"code": "x", "message": "y"}
    assert "warnings" not in body and "redacted_audio_url" not in body
    assert serializers.summary(job(language="fr", warnings=["no speakers"]))["warnings"] == ["no speakers"]
    assert serializers.summary(job(language="fr"))["language"] == "fr"


def test_redacted_audio_is_linked_only_for_a_completed_job_that_kept_it(in_app: None) -> None:
    kept = replace(TranscribeOptions(), redact_pii=True, redact_pii_audio=True)
    assert serializers.redacted_audio(replace(job(State.COMPLETED), options=kept)) == {
        "redacted_audio_url": f"/api/transcribe/async/{TASK_ID}/redacted-audio"}
    assert serializers.redacted_audio(replace(job(State.TRANSCRIBING), options=kept)) == {}
    assert serializers.redacted_audio(job(State.COMPLETED)) == {}


def test_a_queued_jobs_status_says_its_place_and_nothing_of_a_result(in_app: None) -> None:
    body = serializers.status(job(), cast(Any, Reads(position=3)))
    assert body["queue_position"] == 3
    assert body["webhook"] is None and body["chunks"] is None
    assert "segments" not in body and "result" not in body


def test_a_transcribing_jobs_segments_are_in_time_order_whatever_chunk_finished_first(in_app: None) -> None:
    live = [Segment(id=7, start=60.0, end=61.0, text="later"), Segment(id=0, start=0.0, end=1.0, text="first")]
    body = serializers.status(job(State.TRANSCRIBING, chunks=[(0, 960000), (960000, 1920000)]),
                              cast(Any, Reads(live=live)))
    assert body["segments"] == [{"id": 0, "start": 0.0, "end": 1.0, "text": "first"},
                                {"id": 7, "start": 60.0, "end": 61.0, "text": "later"}]
    assert body["chunks"] == 2 and "queue_position" not in body


def test_a_webhooks_state_is_pending_until_it_says_otherwise(in_app: None) -> None:
    body = serializers.status(job(State.EXTRACTING, webhook_url="https://hook.example/x"), cast(Any, Reads()))
    assert body["webhook"] == {"url": "https://hook.example/x", "state": "pending", "attempts": 0, "last_status": None}


def test_a_completed_jobs_result_holds_only_the_parts_the_job_has(in_app: None) -> None:
    plain = Transcript(text="Hi.", language="en", duration=1.5, segments=(Segment(id=0, start=0, end=1.5, text="Hi."),))
    body = serializers.status(job(State.COMPLETED), cast(Any, Reads(transcript=plain)))
    assert body["result"] == {"text": "Hi.", "language": "en", "duration": 1.5,
                              "segments": [{"id": 0, "start": 0, "end": 1.5, "text": "Hi."}]}
    full = replace(plain, segments=(Segment(id=0, start=0, end=1.5, text="Hi.", speaker="SPEAKER_00", channel=1),),
                   speakers=(Speaker("SPEAKER_00", 1.5),), channels=(1,),
                   redactions=(Redaction(0.5, 1.0, "person_name"),), warnings=("hotwords went into the prompt",))
    result = serializers.status(job(State.COMPLETED), cast(Any, Reads(transcript=full)))["result"]
    assert result["segments"][0] == {"id": 0, "start": 0, "end": 1.5, "text": "Hi.", "speaker": "SPEAKER_00",
                                     "channel": 1}
    assert result["speakers"] == [{"id": "SPEAKER_00", "talk_time": 1.5}] and result["channels"] == [1]
    assert result["redactions"] == [{"start": 0.5, "end": 1.0, "policy": "person_name"}]
    assert result["warnings"] == ["hotwords went into the prompt"]


def test_a_completed_job_whose_transcript_expired_has_no_result(in_app: None) -> None:
    assert "result" not in serializers.status(job(State.COMPLETED), cast(Any, Reads()))
