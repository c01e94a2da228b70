"""pipeline/worker/stages.py run in-process with the real context: Redis database 14, the real tiny.en
model (loaded once per session), real files in the session's upload folder."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from standardwebhooks.webhooks import Webhook

from pipeline.errors import JobCancelled, MediaDecodeError, MediaTooLong, StoredFileMissing, UnsupportedMedia
from pipeline.jobs import Moved, State
from pipeline.keys import WEBHOOKS_DUE_KEY, job_key
from pipeline.media import decode_audio
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript
from pipeline.uploads import audio_path, upload_path
from pipeline.worker import stages
from pipeline.worker.context import Context
from pipeline.worker.stages import Next
from tests.support.helpers import SPEECH_EN, SPEECH_EN_TEXT, Receiver, wer
from tests.support.jobs import submit

SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLXRoZS1zdGFnZS10ZXN0cw=="


def job_files(ctx: Context, task_id: str) -> list[Path]:
    """The job's files in the folder store (``jobs/<task_id>/``), hidden partial files too."""
    folder = ctx.settings.upload_dir / "jobs" / task_id
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def snapshot(ctx: Context, task_id: str) -> dict[str, Any]:
    key = job_key(task_id)
    return {
        "hash": ctx.redis.hgetall(key),
        "history": ctx.redis.lrange(f"{key}:history", 0, -1),
        "result": ctx.redis.get(f"{key}:result"),
        "segments": ctx.redis.lrange(f"{key}:segments", 0, -1),
    }


def run_to_completion(ctx: Context, task_id: str) -> None:
    assert stages.extract(ctx, task_id) is Next.TRANSCRIBE
    assert stages.transcribe(ctx, task_id) is Next.NOTIFY


def hand_transcript() -> Transcript:
    return Transcript(text="Hand made.", language="en", duration=1.0, language_probability=0.9,
                      segments=(Segment(id=0, start=0.0, end=1.0, text=" Hand made."),),
                      engine="faster-whisper", model="tiny.en", device="cpu")


# -- extract ---------------------------------------------------------------------------------
def test_extract_writes_the_decoded_audio(ctx: Context) -> None:
    task_id = submit(ctx)
    assert stages.extract(ctx, task_id) is Next.TRANSCRIBE
    target = audio_path(ctx.settings.upload_dir, task_id)
    assert target.is_file()
    saved = np.load(target)
    assert saved.dtype == np.float32
    np.testing.assert_array_equal(saved, decode_audio(SPEECH_EN))
    job = ctx.jobs.get(task_id)
    assert job.status == "extracting"
    assert job.audio_path == str(target)
    assert job.duration == pytest.approx(len(saved) / 16000, abs=0.001)
    assert job.stage == "waiting-for-transcriber"
    assert job.started_at is not None and job.finished_at is None
    assert [h["status"] for h in ctx.jobs.history(task_id)] == ["queued", "extracting"]
    assert ctx.jobs.queue_position(task_id) is None
    # The upload stays until the job is final; no partial file is left behind.
    assert job_files(ctx, task_id) == sorted([target, upload_path(ctx.settings.upload_dir, task_id)])
    assert ctx.cache.stats()["misses"] == 1


def test_extract_redelivered_while_extracting_redoes_the_stage(ctx: Context) -> None:
    task_id = submit(ctx)
    ctx.jobs.transition(task_id, State.EXTRACTING)  # a worker died half-way
    assert stages.extract(ctx, task_id) is Next.TRANSCRIBE
    assert audio_path(ctx.settings.upload_dir, task_id).is_file()
    assert [h["status"] for h in ctx.jobs.history(task_id)] == ["queued", "extracting"]


def test_extract_of_a_job_past_extraction_does_nothing(ctx: Context) -> None:
    task_id = submit(ctx)
    ctx.jobs.transition(task_id, State.TRANSCRIBING)
    before = snapshot(ctx, task_id)
    assert stages.extract(ctx, task_id) is None
    assert snapshot(ctx, task_id) == before
    assert not audio_path(ctx.settings.upload_dir, task_id).exists()


def test_different_options_are_not_answered_from_the_cache(ctx: Context) -> None:
    first = submit(ctx)
    ctx.cache.put(ctx.jobs.get(first).sha256, TranscribeOptions(), hand_transcript())
    other = submit(ctx, options=TranscribeOptions(beam_size=1))
    assert stages.extract(ctx, other) is Next.TRANSCRIBE
    assert ctx.jobs.get(other).cached is False


def test_extract_too_long_raises(ctx: Context) -> None:
    short = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, max_duration_seconds=3))
    task_id = submit(short)
    with pytest.raises(MediaTooLong):
        stages.extract(short, task_id)
    assert not audio_path(ctx.settings.upload_dir, task_id).exists()


def test_extract_stops_when_the_cancel_flag_is_seen(ctx: Context) -> None:
    task_id = submit(ctx)
    ctx.jobs.transition(task_id, State.EXTRACTING)
    # The flag alone, as if DELETE arrived while the file was decoding.
    ctx.redis.set(f"{job_key(task_id)}:cancel", "1")
    with pytest.raises(JobCancelled):
        stages.extract(ctx, task_id)
    assert not audio_path(ctx.settings.upload_dir, task_id).exists()


def test_cancelled_job_is_skipped_by_every_stage(ctx: Context) -> None:
    task_id = submit(ctx)
    assert ctx.jobs.cancel(task_id) is Moved.MOVED
    before = snapshot(ctx, task_id)
    assert stages.extract(ctx, task_id) is None
    assert stages.transcribe(ctx, task_id) is None
    assert snapshot(ctx, task_id) == before
    job = ctx.jobs.get(task_id)
    assert job.status == "cancelled" and job.error is not None and job.error["code"] == "cancelled"


# -- transcribe ------------------------------------------------------------------------------
def test_transcribe_completes_the_job(ctx: Context) -> None:
    task_id = submit(ctx)
    run_to_completion(ctx, task_id)
    job = ctx.jobs.get(task_id)
    assert job.status == "completed" and job.stage == "done"
    assert job.progress == 1.0
    assert job.cached is False
    assert job.device == "cpu"
    assert job.language == "en"
    assert job.duration == pytest.approx(5.9, abs=0.1)
    assert job.started_at is not None and job.finished_at is not None
    assert job.created_at <= job.started_at <= job.finished_at
    assert [h["status"] for h in ctx.jobs.history(task_id)] == [
        "queued", "extracting", "transcribing", "completed"]

    result = ctx.jobs.result(task_id)
    assert result is not None
    assert wer(SPEECH_EN_TEXT, result.text) <= 0.15
    assert result.engine == "faster-whisper" and result.model == "tiny.en" and result.device == "cpu"
    assert result.segments and [s.id for s in result.segments] == list(range(len(result.segments)))
    # The segments streamed during decoding are the result's segments.
    assert ctx.jobs.segments(task_id) == list(result.segments)

    assert job_files(ctx, task_id) == []
    # The result went into the cache, and the claim on the input was let go.
    sha, opts = job.sha256, job.options
    assert ctx.cache.peek(sha, opts) == result
    assert ctx.cache.claimed(sha, opts) is False
    # Final: everything about the job now expires.
    assert 0 < ctx.redis.ttl(job_key(task_id)) <= ctx.settings.result_ttl_seconds


def test_stages_are_idempotent_after_completion(ctx: Context) -> None:
    task_id = submit(ctx)
    run_to_completion(ctx, task_id)
    before = snapshot(ctx, task_id)
    stats = ctx.cache.stats()
    # RabbitMQ redelivers the extract message (and then the transcribe one) of a finished job.
    assert stages.extract(ctx, task_id) is None
    assert stages.transcribe(ctx, task_id) is None
    assert snapshot(ctx, task_id) == before
    assert job_files(ctx, task_id) == []
    assert ctx.cache.stats()["hits"] == stats["hits"]


def test_second_upload_of_the_same_input_is_answered_in_extract(ctx: Context) -> None:
    first = submit(ctx)
    run_to_completion(ctx, first)
    second = submit(ctx)
    assert ctx.jobs.get(second).sha256 == ctx.jobs.get(first).sha256
    assert stages.extract(ctx, second) is Next.NOTIFY
    job = ctx.jobs.get(second)
    assert job.status == "completed" and job.cached is True and job.progress == 1.0
    assert ctx.jobs.result(second) == ctx.jobs.result(first)
    assert [h["status"] for h in ctx.jobs.history(second)] == ["queued", "extracting", "completed"]
    assert job_files(ctx, second) == []
    assert ctx.cache.stats()["hits"] == 1
    # A redelivered transcribe message for it changes nothing.
    before = snapshot(ctx, second)
    assert stages.transcribe(ctx, second) is None
    assert snapshot(ctx, second) == before


def test_transcribe_without_the_decoded_audio_raises(ctx: Context) -> None:
    task_id = submit(ctx)
    ctx.jobs.transition(task_id, State.EXTRACTING)
    with pytest.raises(StoredFileMissing, match=r"audio\.npy is not in storage"):
        stages.transcribe(ctx, task_id)
    job = ctx.jobs.get(task_id)
    assert job.status == "transcribing"
    assert ctx.cache.claimed(job.sha256, job.options) is False


def test_a_chunk_without_the_decoded_audio_raises_the_same_error(ctx: Context) -> None:
    task_id = submit(ctx)
    ctx.jobs.transition(task_id, State.EXTRACTING)
    ctx.jobs.set_fields(task_id, chunks=json.dumps([[0, 16_000], [16_000, 32_000]]),
                        audio_path=str(audio_path(ctx.settings.upload_dir, task_id)))
    with pytest.raises(StoredFileMissing, match=r"1\.npy is not in storage"):
        stages.transcribe_chunk(ctx, task_id, 1)
    assert ctx.jobs.chunks(task_id) == {} and ctx.jobs.get(task_id).status is State.TRANSCRIBING


def test_an_upload_the_worker_cannot_find_is_missing_not_bad_media(ctx: Context) -> None:
    task_id = submit(ctx)
    upload_path(ctx.settings.upload_dir, task_id).unlink()  # as if stored where this host cannot see
    with pytest.raises(StoredFileMissing, match="uploaded file is not in storage") as caught:
        stages.extract(ctx, task_id)
    assert caught.value.code == "file_missing" and caught.value.retryable is False
    # Nothing of the attempt is left in the scratch folder.
    assert not any(ctx.settings.scratch_dir.glob(f"{task_id}*"))


class _TwinWaits(logging.Handler):
    """Sets ``event`` when the stage says that ``task_id`` waits for a twin: the one sign, from
    outside, that the thread has reached the wait."""

    def __init__(self, task_id: str, event: threading.Event) -> None:
        super().__init__(logging.INFO)
        self.task_id, self.event = task_id, event

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.task_id in message and "waits for a twin" in message:
            self.event.set()


@contextlib.contextmanager
def _transcribe_in_thread(ctx: Context, task_id: str) -> Iterator[tuple[threading.Thread, list[Any]]]:
    """Run the transcribe stage in a thread; entered once the thread waits for the twin."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(stages.transcribe(ctx, task_id))
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    waiting = threading.Event()
    handler = _TwinWaits(task_id, waiting)
    logger = logging.getLogger(stages.__name__)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        assert waiting.wait(30), f"the stage never waited for its twin: {outcome}"
        yield thread, outcome
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_twin_waits_for_the_claim_holder_and_takes_its_result(ctx: Context) -> None:
    task_id = submit(ctx)
    assert stages.extract(ctx, task_id) is Next.TRANSCRIBE
    job = ctx.jobs.get(task_id)
    assert ctx.cache.claim(job.sha256, job.options, "twin-job")
    with _transcribe_in_thread(ctx, task_id) as (thread, outcome):
        assert thread.is_alive()
        assert ctx.jobs.get(task_id).status == "transcribing"
        ctx.cache.put(job.sha256, job.options, hand_transcript())
        thread.join(10)
    assert outcome == [Next.NOTIFY]
    done = ctx.jobs.get(task_id)
    assert done.status == "completed" and done.cached is True
    assert ctx.jobs.result(task_id) == hand_transcript()
    assert job_files(ctx, task_id) == []


def test_twin_transcribes_itself_when_the_holder_lets_go(ctx: Context) -> None:
    task_id = submit(ctx)
    assert stages.extract(ctx, task_id) is Next.TRANSCRIBE
    job = ctx.jobs.get(task_id)
    assert ctx.cache.claim(job.sha256, job.options, "twin-job")
    with _transcribe_in_thread(ctx, task_id) as (thread, outcome):
        ctx.cache.release(job.sha256, job.options, "twin-job")  # the twin failed
        thread.join(60)
    assert outcome == [Next.NOTIFY]
    assert ctx.jobs.get(task_id).cached is False
    result = ctx.jobs.result(task_id)
    assert result is not None and wer(SPEECH_EN_TEXT, result.text) <= 0.15


def test_twin_waiting_stops_on_cancel(ctx: Context) -> None:
    task_id = submit(ctx)
    assert stages.extract(ctx, task_id) is Next.TRANSCRIBE
    job = ctx.jobs.get(task_id)
    assert ctx.cache.claim(job.sha256, job.options, "twin-job")
    with _transcribe_in_thread(ctx, task_id) as (thread, outcome):
        assert ctx.jobs.cancel(task_id) is Moved.MOVED
        thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], JobCancelled)
    assert ctx.jobs.get(task_id).status == "cancelled"
    assert ctx.cache.claimed(job.sha256, job.options)  # the holder's claim stands
    assert ctx.cache.claim(job.sha256, job.options, "third-job") is False


# -- fail ------------------------------------------------------------------------------------
def test_fail_on_bad_media(ctx: Context, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(random.Random(7).randbytes(20_000))
    task_id = submit(ctx, junk)
    with pytest.raises(UnsupportedMedia) as info:
        stages.extract(ctx, task_id)
    assert ctx.jobs.get(task_id).status == "extracting"
    assert stages.fail(ctx, task_id, info.value) is Next.NOTIFY
    job = ctx.jobs.get(task_id)
    assert job.status == "failed" and job.stage == "done"
    assert job.error == info.value.to_dict()
    assert job.error is not None and job.error["code"] == "unsupported_media" and job.error["message"]
    assert job.finished_at is not None
    assert job_files(ctx, task_id) == []
    assert ctx.jobs.result(task_id) is None
    # Failing again (a redelivered message) changes nothing and asks for no second webhook.
    before = snapshot(ctx, task_id)
    assert stages.fail(ctx, task_id, MediaDecodeError("other")) is None
    assert snapshot(ctx, task_id) == before


def test_fail_does_not_touch_a_completed_job(ctx: Context) -> None:
    task_id = submit(ctx)
    ctx.jobs.transition(task_id, State.COMPLETED, result=hand_transcript())
    assert stages.fail(ctx, task_id, MediaDecodeError("late")) is None
    job = ctx.jobs.get(task_id)
    assert job.status == "completed" and job.error is None


# -- notify ----------------------------------------------------------------------------------
@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([])
    yield r
    r.close()


@pytest.fixture
def hook_ctx(ctx: Context) -> Context:
    """The test context with webhooks to loopback allowed, signed, and at most 3 attempts."""
    return dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, webhook_allow_private=True, webhook_secret=SECRET, webhook_max_attempts=3))


def completed_job(ctx: Context, url: str = "") -> str:
    task_id = submit(ctx, webhook_url=url, result_url=f"http://api.example/r/{url and 'x'}")
    ctx.jobs.transition(task_id, State.COMPLETED, result=hand_transcript(), cached=False)
    return task_id


def test_notify_without_a_webhook_does_nothing(hook_ctx: Context, receiver: Receiver) -> None:
    task_id = completed_job(hook_ctx)
    before = snapshot(hook_ctx, task_id)
    assert stages.notify(hook_ctx, task_id) is None
    assert snapshot(hook_ctx, task_id) == before
    assert hook_ctx.jobs.get(task_id).webhook_state == ""
    assert receiver.requests == []


def test_notify_waits_for_a_final_job(hook_ctx: Context, receiver: Receiver) -> None:
    task_id = submit(hook_ctx, webhook_url=receiver.url)
    hook_ctx.jobs.transition(task_id, State.TRANSCRIBING)
    assert stages.notify(hook_ctx, task_id) is None
    assert receiver.requests == []
    assert hook_ctx.jobs.get(task_id).webhook_attempts == 0


def test_notify_delivers_a_signed_event(hook_ctx: Context, receiver: Receiver) -> None:
    task_id = completed_job(hook_ctx, receiver.url)
    assert stages.notify(hook_ctx, task_id) is None
    job = hook_ctx.jobs.get(task_id)
    assert job.webhook_state == "delivered"
    assert job.webhook_attempts == 1
    assert job.webhook_last_status == 200
    assert job.status == "completed"  # the webhook never changes the job's state

    assert len(receiver.requests) == 1
    headers, body, _ = receiver.requests[0]
    assert headers["content-type"] == "application/json"
    Webhook(SECRET).verify(body, headers)  # raises when the signature is wrong
    event = json.loads(body)
    assert event["type"] == "transcription.completed"
    data = event["data"]
    assert data["task_id"] == task_id and data["status"] == "completed"
    assert data["result_url"] == job.result_url
    assert data["error"] is None and data["cached"] is False
    assert data["transcript"]["text"] == "Hand made."
    # Delivered is delivered: a redelivered notify message sends nothing more.
    assert stages.notify(hook_ctx, task_id) is None
    assert len(receiver.requests) == 1


def test_notify_for_a_failed_job_carries_the_error(hook_ctx: Context, receiver: Receiver) -> None:
    task_id = submit(hook_ctx, webhook_url=receiver.url)
    stages.fail(hook_ctx, task_id, UnsupportedMedia("not media"))
    assert stages.notify(hook_ctx, task_id) is None
    event = json.loads(receiver.requests[0][1])
    assert event["type"] == "transcription.failed"
    assert event["data"]["error"] == {"code": "unsupported_media", "message": "not media"}
    assert event["data"]["result_url"] is None and event["data"]["transcript"] is None


def test_notify_retries_on_500_then_records_failed(hook_ctx: Context, receiver: Receiver) -> None:
    receiver.script = [500, 503, 500]
    task_id = completed_job(hook_ctx, receiver.url)
    assert stages.notify(hook_ctx, task_id) == 1  # WEBHOOK_SCHEDULE_SECONDS 0,1,4,8 in the tests
    job = hook_ctx.jobs.get(task_id)
    assert (job.webhook_state, job.webhook_attempts, job.webhook_last_status) == ("pending", 1, 500)
    assert stages.notify(hook_ctx, task_id) is None  # not due yet: the outbox holds it a second
    hook_ctx.redis.zadd(WEBHOOKS_DUE_KEY, {task_id: 0})  # due now, as the sweeper would find it
    assert stages.notify(hook_ctx, task_id) == 4
    assert hook_ctx.jobs.get(task_id).webhook_last_status == 503
    # WEBHOOK_MAX_ATTEMPTS (3 here) reached: given up.
    hook_ctx.redis.zadd(WEBHOOKS_DUE_KEY, {task_id: 0})
    assert stages.notify(hook_ctx, task_id) is None
    job = hook_ctx.jobs.get(task_id)
    assert (job.webhook_state, job.webhook_attempts, job.webhook_last_status) == ("failed", 3, 500)
    assert job.status == "completed"
    assert stages.notify(hook_ctx, task_id) is None
    assert len(receiver.requests) == 3
    # Every attempt carries the same message id, so the receiver can drop duplicates.
    assert len({headers["webhook-id"] for headers, _, _ in receiver.requests}) == 1


def test_notify_records_failed_on_a_500_at_the_last_attempt(ctx: Context, receiver: Receiver) -> None:
    one_try = dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, webhook_allow_private=True, webhook_max_attempts=1))
    receiver.script = [500]
    task_id = completed_job(one_try, receiver.url)
    assert stages.notify(one_try, task_id) is None
    job = one_try.jobs.get(task_id)
    assert (job.webhook_state, job.webhook_attempts, job.webhook_last_status) == ("failed", 1, 500)


def test_notify_gives_up_at_once_on_a_client_error(hook_ctx: Context, receiver: Receiver) -> None:
    receiver.script = [404]
    task_id = completed_job(hook_ctx, receiver.url)
    assert stages.notify(hook_ctx, task_id) is None
    job = hook_ctx.jobs.get(task_id)
    assert (job.webhook_state, job.webhook_attempts, job.webhook_last_status) == ("failed", 1, 404)


def test_notify_retries_when_nothing_listens(hook_ctx: Context) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    task_id = completed_job(hook_ctx, f"http://127.0.0.1:{port}/hook")
    assert stages.notify(hook_ctx, task_id) == 1
    job = hook_ctx.jobs.get(task_id)
    assert (job.webhook_state, job.webhook_attempts, job.webhook_last_status) == ("pending", 1, None)


def test_notify_refuses_loopback_unless_allowed(ctx: Context, receiver: Receiver) -> None:
    guarded = dataclasses.replace(
        ctx, settings=dataclasses.replace(ctx.settings, webhook_allow_private=False)
    )
    task_id = completed_job(guarded, receiver.url)
    assert stages.notify(guarded, task_id) is None
    job = guarded.jobs.get(task_id)
    assert job.webhook_state == "failed" and job.webhook_last_status is None
    assert receiver.requests == []


class _OutOfMemory:
    """Stands in for a model on a GPU this machine does not have: it runs out of memory."""

    name = "faster-whisper"
    model_name = "tiny.en"
    device = "cuda"

    def transcribe(self, audio: Any, options: TranscribeOptions, on_segment: Any) -> Transcript:
        raise RuntimeError("CUDA failed with error out of memory")


def test_gpu_out_of_memory_retries_the_job_on_the_cpu(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.settings import Settings
    from pipeline.worker import stages as stages_module
    from pipeline.worker.engines import DeviceChoice, EngineKey, ModelCache, build_engine

    built: list[str] = []

    def factory(key: EngineKey, settings: Settings) -> Any:
        built.append(key.device)
        return _OutOfMemory() if key.device == "cuda" else build_engine(key, settings)

    monkeypatch.setattr(stages_module, "choose_device", lambda settings: DeviceChoice("cuda", "test"))
    monkeypatch.setattr(ctx, "models", ModelCache(ctx.settings, factory))
    task_id = submit(ctx)
    assert stages.extract(ctx, task_id) is Next.TRANSCRIBE
    stages.transcribe(ctx, task_id)
    job = ctx.jobs.get(task_id)
    assert job.status == "completed"
    assert job.device == "cpu" and job.device_reason == "CUDA out of memory; retried on the CPU"
    assert built == ["cuda", "cpu"]
    # The GPU model that failed is not kept.
    assert [k.device for k in ctx.models.loaded()] == ["cpu"]
    result = ctx.jobs.result(task_id)
    assert result is not None and result.device == "cpu" and result.text
