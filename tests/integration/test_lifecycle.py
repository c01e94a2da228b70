"""The job lifecycle on the running service: cache, webhooks, cancellation, hostile input."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from pipeline import keys
from tests.support.helpers import (
    SPEECH_EN,
    SPEECH_EN_TEXT,
    Receiver,
    long_speech,
    make_video,
    silent_wav_header,
    wait_for,
    wer,
)
from tests.support.stack import WEBHOOK_SECRET, Stack


def settled_webhook(live: Stack, task_id: str) -> dict[str, object]:
    """The job's webhook record once it leaves ``pending``."""

    def settled() -> dict[str, object] | None:
        webhook: dict[str, object] = live.get(f"/api/transcribe/async/status/{task_id}").json()["webhook"]
        return webhook if webhook["state"] != "pending" else None

    return wait_for(settled, timeout=30, interval=0.1)


def submit(stack: Stack, data: bytes, name: str = "audio", **form: str) -> dict[str, object]:
    response = stack.post("/api/transcribe/async", files={"file": (name, data)}, data=form)
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


def test_cache_hit_is_answered_at_upload_and_still_fires_the_webhook(live: Stack) -> None:
    audio = SPEECH_EN.read_bytes()
    first = submit(live, audio)
    assert live.wait_final(str(first["task_id"]))["status"] == "completed"
    before = live.get("/api/cache-stats").json()

    receiver = Receiver()
    try:
        started = time.monotonic()
        second = submit(live, audio, webhook_url=receiver.url)
        assert second["status"] == "completed" and second["cached"] is True
        assert time.monotonic() - started < 5
        status = live.get(f"/api/transcribe/async/status/{second['task_id']}").json()
        assert status["cached"] is True and wer(SPEECH_EN_TEXT, status["result"]["text"]) <= 0.15
        assert receiver.received.wait(30), "the webhook of a cached job fires too"
        payload = json.loads(receiver.requests[0][1])
        assert payload["type"] == "transcription.completed"
        assert payload["data"]["cached"] is True
    finally:
        receiver.close()

    after = live.get("/api/cache-stats").json()
    assert after["hits"] == before["hits"] + 1
    assert after["entries"] >= 1 and after["bytes"] > 0 and 0 < after["hit_rate"] <= 1

    # Another option is another entry: no hit.
    other = submit(live, audio, beam_size="2")
    assert other["cached"] is False
    live.wait_final(str(other["task_id"]))

    cleared = live.post("/api/cache/clear").json()
    assert cleared["cleared"] >= 2
    assert live.get("/api/cache-stats").json()["entries"] == 0
    assert submit(live, audio)["cached"] is False


def test_concurrent_identical_uploads_transcribe_once(live: Stack, tmp_path: Path) -> None:
    audio = long_speech(tmp_path / "long.wav", 3).read_bytes()
    ids: list[str] = []

    def upload() -> None:
        ids.append(str(submit(live, audio)["task_id"]))

    threads = [threading.Thread(target=upload) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finals = [live.wait_final(i) for i in ids]
    assert all(f["status"] == "completed" for f in finals)
    texts = {f["result"]["text"] for f in finals}  # type: ignore[index]
    assert len(texts) == 1
    # Exactly one job ran the engine; the others took its result.
    assert sorted(f["cached"] for f in finals) == [False, True, True]


def test_signed_webhook_retried_until_delivered(live: Stack) -> None:
    receiver = Receiver([500, 500, 200])
    try:
        accepted = submit(live, SPEECH_EN.read_bytes(), webhook_url=receiver.url,
                          webhook_auth_header_name="Authorization",
                          webhook_auth_header_value="Bearer receiver-token")
        assert live.wait_final(str(accepted["task_id"]))["status"] == "completed"
        assert receiver.received.wait(30)
    finally:
        receiver.close()
    assert len(receiver.requests) == 3
    gaps = [b[2] - a[2] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.5, f"backoff grows: {gaps}"
    headers, body, _ = receiver.requests[-1]
    payload = Webhook(WEBHOOK_SECRET).verify(body, headers)
    assert payload["type"] == "transcription.completed"
    assert payload["data"]["task_id"] == accepted["task_id"]
    assert payload["data"]["result_url"] == accepted["result_url"]
    assert wer(SPEECH_EN_TEXT, payload["data"]["transcript"]["text"]) <= 0.15
    assert headers["authorization"] == "Bearer receiver-token"
    # The same event keeps its id across attempts, so a receiver can drop duplicates.
    assert len({h["webhook-id"] for h, _, _ in receiver.requests}) == 1

    # The receiver answers before the notifier records the answer, so wait for the record.
    webhook = settled_webhook(live, str(accepted["task_id"]))
    assert webhook == {"url": receiver.url, "state": "delivered", "attempts": 3, "last_status": 200}


def test_webhook_not_retried_on_a_client_error(live: Stack) -> None:
    receiver = Receiver([404])
    try:
        accepted = submit(live, SPEECH_EN.read_bytes(), webhook_url=receiver.url, beam_size="1")
        task_id = str(accepted["task_id"])
        live.wait_final(task_id)

        webhook = settled_webhook(live, task_id)
        assert webhook == {"url": receiver.url, "state": "failed", "attempts": 1, "last_status": 404}
        assert len(receiver.requests) == 1
    finally:
        receiver.close()


def test_failed_job_fires_the_failed_event(live: Stack, tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        accepted = submit(live, silent_wav_header(tmp_path / "h.wav").read_bytes(), webhook_url=receiver.url)
        assert live.wait_final(str(accepted["task_id"]))["status"] == "failed"
        assert receiver.received.wait(30)
        payload = Webhook(WEBHOOK_SECRET).verify(receiver.requests[0][1], receiver.requests[0][0])
        assert payload["type"] == "transcription.failed"
        assert payload["data"]["error"]["code"] == "media_decode_error"
    finally:
        receiver.close()


def test_cancel_a_running_transcription(live: Stack, tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        # The sequential decoder hands over each segment as it is decoded, which is what "stops
        # within one segment" needs; the batched one (the default on long audio) decodes a batch
        # of pieces at a time, so it stops at the end of the current batch.
        accepted = submit(live, long_speech(tmp_path / "long.wav", 12).read_bytes(),
                          webhook_url=receiver.url, batch_size="1")
        task_id = str(accepted["task_id"])
        deadline = time.monotonic() + 60
        while not live.redis.llen(keys.job_segments_key(task_id)):
            assert time.monotonic() < deadline, "no segment decoded"
            time.sleep(0.05)
        response = live.session_delete(f"/api/transcribe/async/{task_id}")
        assert response.status_code == 202
        assert response.json() == {"task_id": task_id, "status": "cancelled"}
        status = live.get(f"/api/transcribe/async/status/{task_id}").json()
        assert status["status"] == "cancelled"
        # The worker notices within one decoded segment and stops decoding.
        time.sleep(3)
        decoded = live.redis.llen(keys.job_segments_key(task_id))
        time.sleep(2)
        assert live.redis.llen(keys.job_segments_key(task_id)) == decoded
        assert decoded < 12
        assert not (live.settings.upload_dir / "jobs" / task_id).exists()
        assert receiver.received.wait(30)
        assert json.loads(receiver.requests[0][1])["type"] == "transcription.cancelled"

        again = live.session_delete(f"/api/transcribe/async/{task_id}")
        assert again.status_code == 409
        assert live.session_delete("/api/transcribe/async/not-a-job").status_code == 404
        result = live.get(f"/api/transcribe/async/{task_id}/result")
        assert result.status_code == 409
    finally:
        receiver.close()


def _hostile_corpus(tmp_path: Path) -> dict[str, tuple[bytes, int | str]]:
    """name -> (bytes, the HTTP status at upload, or the failed job's error code)."""
    speech = SPEECH_EN.read_bytes()
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
    return {
        "empty.wav": (b"", 400),
        "random.mp3": (os.urandom(32_000), 415),
        "random.flac": (os.urandom(32_000), 415),
        "image.png": (png, 415),
        "text.wav": (b"RIFF but not really a wave file at all" * 20, 415),
        "silent-video.mp4": (make_video(tmp_path / "v.mp4", None).read_bytes(), 415),
        "playlist.m3u8": (
            f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{SPEECH_EN}\n"
            "#EXTINF:10,\nhttp://127.0.0.1:9/a.wav\n#EXT-X-ENDLIST\n".encode(), 415),
        "list.ffconcat": (f"ffconcat version 1.0\nfile {SPEECH_EN}\n".encode(), 415),
        "truncated-header.wav": (speech[:30], 415),
        "hollow.wav": (silent_wav_header(tmp_path / "h.wav").read_bytes(), "media_decode_error"),
        "truncated.wav": (speech[: len(speech) // 2], "completed"),
    }


def test_hostile_corpus_gets_clear_answers_and_service_keeps_serving(live: Stack, tmp_path: Path) -> None:
    for name, (data, expected) in _hostile_corpus(tmp_path).items():
        response = live.post("/api/transcribe/async", files={"file": (name, data)})
        if isinstance(expected, int):
            assert response.status_code == expected, (name, response.text)
            error = response.json()["error"]
            assert error["code"] and len(error["message"]) > 10, name
            continue
        assert response.status_code == 202, (name, response.text)
        final = live.wait_final(response.json()["task_id"])
        if expected == "completed":
            assert final["status"] == "completed", name
        else:
            assert final["status"] == "failed" and final["error"]["code"] == expected, (name, final)
    assert live.get("/api/health").status_code == 200
    done = live.wait_final(str(submit(live, SPEECH_EN.read_bytes(), beam_size="3")["task_id"]))
    assert done["status"] == "completed"
    assert wer(SPEECH_EN_TEXT, done["result"]["text"]) <= 0.15  # type: ignore[index]


def test_a_recording_fetched_by_url(live: Stack, tmp_path: Path) -> None:
    import http.server
    import threading
    from functools import partial

    (tmp_path / "talk.wav").write_bytes(SPEECH_EN.read_bytes())
    (tmp_path / "big.bin").write_bytes(b"\0" * 1024)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        accepted = live.post("/api/transcribe/async", data={"url": f"{base}/talk.wav", "beam_size": "2"})
        assert accepted.status_code == 202, accepted.text
        done = live.wait_final(accepted.json()["task_id"])
        assert done["status"] == "completed" and done["filename"] == "talk.wav"
        assert wer(SPEECH_EN_TEXT, done["result"]["text"]) <= 0.15  # type: ignore[index]

        missing = live.post("/api/transcribe/async", data={"url": f"{base}/nothing.wav"})
        assert missing.status_code == 400 and missing.json()["error"]["field"] == "url"
        assert "HTTP 404" in missing.json()["error"]["message"]
        not_media = live.post("/api/transcribe/async", data={"url": f"{base}/big.bin"})
        assert not_media.status_code == 415
        for bad in ("ftp://example.com/a.wav", "not a url"):
            refused = live.post("/api/transcribe/async", data={"url": bad})
            assert refused.status_code == 400 and refused.json()["error"]["field"] == "url"
        neither = live.post("/api/transcribe/async", data={"beam_size": "2"})
        assert neither.status_code == 400 and neither.json()["error"]["field"] == "file"
    finally:
        server.shutdown()
        server.server_close()
