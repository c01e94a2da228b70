"""api/recording.py: a live session's recording made an ordinary job at its end, queued for the
extract stage or answered from the cache (real Redis, Dramatiq's StubBroker, a folder store)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from flask import Flask

from api import transcribe
from api.recording import Recording
from api.state import ApiState, init_state
from pipeline import queues
from pipeline.cache import scoped
from pipeline.keys import job_key
from pipeline.live import LiveConfig
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.stores import open_stores
from pipeline.transcript import Segment, Transcript

SPOKEN = Transcript(text="Hello.", language="en", duration=1.0,
                    segments=(Segment(id=0, start=0, end=1, text="Hello."),))


@dataclass
class Session:
    st: ApiState
    broker: StubBroker
    queue: str


@pytest.fixture
def session(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Session]:
    own = replace(settings, upload_dir=tmp_path / "store", scratch_dir=tmp_path / "scratch")
    stores = open_stores(own)
    broker = StubBroker()
    queue = queues.ACTOR_QUEUES[queues.EXTRACT_ACTOR]
    broker.declare_queue(queue)
    st = ApiState(settings=own, redis=stores.redis, jobs=stores.jobs, cache=stores.cache, broker=cast(Any, broker),
                  hub=cast(Any, None), limits=cast(Any, None), storage=stores.storage)
    app = Flask(__name__)
    app.register_blueprint(transcribe.bp)
    init_state(app, st)
    with app.test_request_context():
        yield Session(st, broker, queue)
    stores.redis.close()


def spoken(recording: Recording, seconds: float = 1.5) -> None:
    recording.write((np.sin(np.arange(int(16000 * seconds)) / 10) * 8000).astype("<i2").tobytes())


def test_a_recording_becomes_a_queued_job_of_its_owner_named_after_the_session(session: Session) -> None:
    recording = Recording(session.st, "owner-a", "sess_abc")
    spoken(recording)
    answer = recording.finish(LiveConfig(engine_model="tiny.en", language="en", prompt="Names: Ada."))
    assert answer == {"task_id": recording.task_id, "status": "queued", "cached": False,
                      "status_url": f"/api/transcribe/async/status/{recording.task_id}",
                      "result_url": f"/api/transcribe/async/{recording.task_id}/result", "duration": 1.5}
    job = session.st.jobs.get(recording.task_id)
    assert (job.owner, job.filename, job.sha256) == ("owner-a", "sess_abc.au", recording.sink.sha256)
    assert (job.options.model, job.options.language, job.options.initial_prompt) == ("tiny.en", "en", "Names: Ada.")
    record = cast(dict[str, str], session.st.redis.hgetall(job_key(recording.task_id)))
    # The header's 24 bytes and 1.5 s of 16-bit samples.
    assert (record["live_session"], record["size"]) == ("sess_abc", str(24 + 2 * 24000))
    assert job.upload_path == f"{session.st.storage.url}/{recording.sink.key}"
    sent = [Message.decode(raw) for raw in session.broker.queues[session.queue].queue]
    assert [(m.actor_name, m.args) for m in sent] == [(queues.EXTRACT_ACTOR, (recording.task_id,))]


def test_a_recording_already_transcribed_with_those_options_is_answered_from_the_cache(session: Session) -> None:
    first = Recording(session.st, "", "sess_1")
    spoken(first)
    first.sink.close()
    options = TranscribeOptions.parse({"model": "tiny.en"}, session.st.settings)
    session.st.cache.put(scoped(first.sink.sha256, ""), options, SPOKEN)
    again = Recording(session.st, "", "sess_2")
    spoken(again)
    answer = again.finish(LiveConfig(engine_model="tiny.en"))
    assert answer is not None and (answer["status"], answer["cached"]) == ("completed", True)
    assert session.st.jobs.result(again.task_id) == SPOKEN
    assert session.broker.queues[session.queue].qsize() == 0
