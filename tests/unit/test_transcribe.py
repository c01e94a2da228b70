"""api/transcribe.py: the helpers behind the job routes (who owns a job, why it has no transcript, how
a transcript is answered), in a request context with a stand-in for the job store's reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

import pytest
from flask import Flask, g

from api import transcribe
from api.state import ApiState, init_state
from api.transcribe import answer_result, failure, finished, finished_transcript, owned
from pipeline.errors import (
    InvalidOption,
    JobNotFound,
    MediaTooLong,
    PipelineError,
    ResultNotReady,
    ResultOfFailedJob,
)
from pipeline.jobs import Job, State
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Segment, Transcript

TASK_ID = "fedcba9876543210fedcba9876543210"
HELLO = Transcript(text="Hello there.", language="en", duration=2.0,
                   segments=(Segment(id=0, start=0.0, end=2.0, text=" Hello there."),))


@dataclass
class Store:
    """The job store's reads the helpers make: one job and its transcript."""

    jobs: dict[str, Job] = field(default_factory=dict)
    transcripts: dict[str, Transcript] = field(default_factory=dict)

    def get(self, task_id: str) -> Job:
        if task_id not in self.jobs:
            raise JobNotFound(f"No job with id {task_id}.")
        return self.jobs[task_id]

    def result(self, task_id: str) -> Transcript | None:
        return self.transcripts.get(task_id)


def job(status: State = State.COMPLETED, **fields: Any) -> Job:
    return Job(**{"task_id": TASK_ID, "status": status, "stage": "", "progress": 1.0, "created_at": 1.0,
                  "options": TranscribeOptions(), **fields})


@pytest.fixture
def store() -> Iterator[Store]:
    found = Store()
    app = Flask(__name__)
    app.register_blueprint(transcribe.bp)
    none = cast(Any, None)
    init_state(app, ApiState(settings=Settings(), redis=none, jobs=cast(Any, found), cache=none, broker=none,
                             hub=none, limits=none, storage=none))
    with app.test_request_context():
        g.owner, g.is_admin = "owner-a", False
        yield found


def test_another_owners_job_is_not_found_unless_the_caller_is_an_admin(store: Store) -> None:
    mine, theirs = job(owner="owner-a"), job(owner="owner-b")
    assert owned(mine) is mine
    with pytest.raises(JobNotFound, match=f"No job with id {TASK_ID}"):
        owned(theirs)
    g.is_admin = True
    assert owned(theirs) is theirs


def test_a_failed_job_answers_with_its_recorded_error_and_that_codes_status() -> None:
    error = failure(job(State.FAILED, error={"code": "media_too_long", "message": "too long"}))
    assert isinstance(error, MediaTooLong) and error.http_status == 422 and error.message == "too long"
    unknown = failure(job(State.FAILED, error={"code": "from_a_newer_version", "message": "odd"}))
    assert (type(unknown), unknown.code, unknown.http_status) == (PipelineError, "from_a_newer_version", 500)
    blank = failure(job(State.FAILED))
    assert (blank.code, blank.message) == ("internal_error", "The job failed.")


def test_only_a_completed_job_has_a_transcript_and_the_error_says_why_not(store: Store) -> None:
    store.jobs[TASK_ID] = job(State.TRANSCRIBING, owner="owner-a")
    with pytest.raises(ResultNotReady, match=r"The job is transcribing; the transcript is not ready yet\."):
        finished(TASK_ID)
    store.jobs[TASK_ID] = job(State.FAILED, owner="owner-a", error={"code": "x", "message": "no audio"})
    with pytest.raises(ResultOfFailedJob, match="The job failed: no audio"):
        finished(TASK_ID)
    store.jobs[TASK_ID] = job(owner="owner-a")
    assert finished(TASK_ID).status == "completed"
    with pytest.raises(ResultNotReady, match="no longer available"):
        finished_transcript(TASK_ID)  # the job's record outlived its transcript
    store.transcripts[TASK_ID] = HELLO
    assert finished_transcript(TASK_ID) is HELLO


def test_a_transcript_is_named_after_the_recording_inline_or_as_an_attachment(store: Store) -> None:
    store.transcripts[TASK_ID] = HELLO
    answer = answer_result(job(filename="meeting.m4a"), "text")
    assert answer.get_data(as_text=True).strip() == "Hello there."
    assert answer.content_type == "text/plain; charset=utf-8"
    assert answer.headers["Content-Disposition"] == "inline; filename=\"meeting.txt\"; filename*=UTF-8''meeting.txt"
    saved = answer_result(job(filename="meeting.m4a"), "verbose_json", download=True)
    assert saved.headers["Content-Disposition"].startswith('attachment; filename="meeting.json"')


def test_a_name_outside_ascii_is_spelled_out_for_old_clients_and_kept_whole_for_new_ones(store: Store) -> None:
    store.transcripts[TASK_ID] = HELLO
    answer = answer_result(job(filename='Réunion "été".wav'), "srt")
    assert answer.headers["Content-Disposition"] == (
        "inline; filename=\"R_union_t_.srt\"; filename*=UTF-8''R%C3%A9union%20%22%C3%A9t%C3%A9%22.srt")
    nameless = answer_result(job(), "vtt")
    assert f'filename="{TASK_ID}.vtt"' in nameless.headers["Content-Disposition"]


def test_rttm_needs_a_diarized_job_and_caption_flow_needs_subtitles(store: Store) -> None:
    store.transcripts[TASK_ID] = HELLO
    with pytest.raises(InvalidOption) as rttm:
        answer_result(job(), "rttm")
    assert rttm.value.field == "format"
    diarized = job(options=replace(TranscribeOptions(), diarize=True), filename="call.wav")
    assert answer_result(diarized, "rttm").status_code == 200
    with pytest.raises(InvalidOption) as flow:
        answer_result(job(), "json", chars_per_caption=30)
    assert flow.value.field == "chars_per_caption"


def test_a_completed_job_without_its_transcript_is_not_ready(store: Store) -> None:
    with pytest.raises(ResultNotReady, match="its transcript is not available"):
        answer_result(job(), "json")
