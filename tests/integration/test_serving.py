"""The serving model against the real stack: gunicorn's gevent worker keeps answering while
hundreds of clients wait (event streams, synchronous waits), the process shares one Redis
subscriber and one RabbitMQ publishing connection, and every wait has a deadline: event streams
(STREAM_MAX_SECONDS), synchronous routes (SYNC_TIMEOUT_SECONDS) and fetches by url
(FETCH_TIMEOUT_SECONDS)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline.keys import QUEUED_KEY
from tests.support.helpers import long_speech
from tests.support.private_api import PrivateApi, SseClient, private_api

STREAMS = 200


def timed_health(api: PrivateApi) -> float:
    started = time.monotonic()
    response = requests.get(api.url + "/api/health", timeout=30)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def subscriber_connections(api: PrivateApi) -> int:
    """Redis connections subscribed to a channel, on this stack's database."""
    db = api.env["REDIS_URL"].rsplit("/", 1)[1]
    clients: list[dict[str, Any]] = api.redis.client_list()  # type: ignore[assignment]
    return len([c for c in clients if str(c.get("db")) == db and int(c.get("sub", 0)) > 0])


def amqp_connections(pid: int) -> int:
    """TCP connections of process ``pid`` to RabbitMQ's port."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if (target := os.readlink(fd)).startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(":1628") and fields[3] == "01" and fields[9] in inodes:  # 5672, established
                count += 1
    return count


def test_health_answers_within_a_second_with_200_streams_open_on_a_running_job(tmp_path: Path) -> None:
    recording = long_speech(tmp_path / "long.wav", repeats=40)
    with private_api(tmp_path, "serving", {"MAX_OPEN_STREAMS_PER_CLIENT": "1000"},
                     processes=("web", "worker", "transcriber")) as api:
        subscribers_before = subscriber_connections(api)
        task_id = api.upload(path=recording).json()["task_id"]
        deadline = time.monotonic() + 120
        while api.get(f"/api/transcribe/async/status/{task_id}").json()["status"] != "transcribing":
            assert time.monotonic() < deadline, "the job never started transcribing"
            time.sleep(0.2)
        streams = [SseClient(api.url, f"/api/transcribe/async/{task_id}/events") for _ in range(STREAMS)]
        try:
            assert {s.read_headers() for s in streams} == {200}
            timings = [timed_health(api) for _ in range(10)]
            status_timing = []
            for _ in range(5):
                started = time.monotonic()
                assert api.get(f"/api/transcribe/async/status/{task_id}").status_code == 200
                status_timing.append(time.monotonic() - started)
            assert max(timings) < 1.0, timings
            assert max(status_timing) < 1.0, status_timing
            # One subscriber for the process, however many streams follow the job.
            assert subscriber_connections(api) - subscribers_before <= 1
            # The streams get the job's segments as they are decoded...
            for s in streams[:5]:
                s.read_until(b"event: segment", timeout=300)
            # ...and every one of them its end: the job is cancelled rather than waited for, so
            # that the test does not spend minutes decoding a recording long enough to stay busy.
            assert requests.delete(f"{api.url}/api/transcribe/async/{task_id}", timeout=60).status_code == 202
            for s in streams:
                s.read_until(b"event: end", timeout=120)
            for s in streams[:5]:
                body = s.received.decode()
                end = json.loads(re.search(r"event: end\r?\ndata: (.*)", body).group(1))  # type: ignore[union-attr]
                assert end["status"] == "cancelled"
        finally:
            for s in streams:
                s.close()


class SlowServer:
    """Answers 200 with a long Content-Length, then a byte every half second: never a read
    timeout, never done."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                while not server.stop.wait(0.5):
                    try:
                        self.wfile.write(b"R")
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/slow.wav"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateApi]:
    """The API alone: jobs stay queued, so every wait runs into its deadline."""
    with private_api(tmp_path_factory.mktemp("deadlines"), "deadlines", {
        "SYNC_TIMEOUT_SECONDS": "10", "STREAM_MAX_SECONDS": "3", "FETCH_TIMEOUT_SECONDS": "3",
        "MAX_ACTIVE_JOBS_PER_CLIENT": "0", "MAX_OPEN_STREAMS_PER_CLIENT": "0",
    }) as running:
        yield running


def test_synchronous_waits_are_bounded_and_hold_no_thread(api: PrivateApi) -> None:
    waits = 40  # more than the 16 threads the API used to have
    def queued() -> int:
        return int(api.redis.zcard(QUEUED_KEY))  # type: ignore[arg-type]

    queued_before = queued()
    with ThreadPoolExecutor(waits) as pool:
        started = time.monotonic()
        futures = [pool.submit(api.upload, None, to="/api/transcribe") for _ in range(waits - 1)]
        # The OpenAI route has the same deadline.
        futures.append(pool.submit(api.upload, None, to="/v1/audio/transcriptions", model="whisper-1"))
        # Once every upload is in and only waits, health is asked while all of them wait.
        while queued() < queued_before + waits and time.monotonic() - started < 20:
            time.sleep(0.05)
        during = [timed_health(api) for _ in range(5)]
        waiting = sum(not f.done() for f in futures)
        answers = [f.result() for f in futures]
        took = time.monotonic() - started
    assert waiting == waits, "the waits ended before health was asked: raise SYNC_TIMEOUT_SECONDS here"
    assert max(during) < 1.0, during
    assert {a.status_code for a in answers} == {504}, {a.text for a in answers}
    assert all(a.json()["error"]["code"] == "sync_timeout" for a in answers)
    assert took < 40, took


def test_an_event_stream_ends_after_stream_max_seconds(api: PrivateApi) -> None:
    task_id = api.upload().json()["task_id"]
    stream = SseClient(api.url, f"/api/transcribe/async/{task_id}/events")
    started = time.monotonic()
    try:
        assert stream.read_headers() == 200
        body = stream.read_to_close(timeout=30).decode()
    finally:
        stream.close()
    assert 2.5 < time.monotonic() - started < 15
    assert "event: status" in body
    end = json.loads(re.search(r"event: end\r?\ndata: (.*)", body).group(1))  # type: ignore[union-attr]
    assert end["status"] == "queued"  # still running: the client reconnects


def test_fetching_by_url_has_a_total_deadline(api: PrivateApi) -> None:
    server = SlowServer()
    try:
        before = api.stored()
        started = time.monotonic()
        refused = api.post("/api/transcribe/async", data={"url": server.url})
        took = time.monotonic() - started
    finally:
        server.close()
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "fetch_timeout" and error["field"] == "url" and "FETCH_TIMEOUT_SECONDS" in error["message"]
    assert 2.5 < took < 10, took
    assert api.stored() == before


def test_the_api_publishes_on_one_rabbitmq_connection(api: PrivateApi) -> None:
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: api.upload(), range(30)))
    assert {a.status_code for a in answers} == {202}
    (worker,) = api.worker_pids()
    assert amqp_connections(worker) == 1


def test_a_stopping_api_ends_its_event_streams_and_exits_at_once(tmp_path: Path) -> None:
    """SIGTERM: gunicorn waits for the requests in flight, and a stream on a job that is still
    queued never ends by itself. The streams end with their `end` event (the client reconnects)
    and the process exits in seconds, not after the 30 s graceful timeout."""
    with private_api(tmp_path, "stopping", {}) as api:
        task_id = api.upload().json()["task_id"]
        streams = [SseClient(api.url, f"/api/transcribe/async/{task_id}/events") for _ in range(3)]
        try:
            assert {s.read_headers() for s in streams} == {200}
            for s in streams:
                s.read_until(b"event: status", timeout=10)
            web = api.service.procs["web"]
            started = time.monotonic()
            web.terminate()
            for s in streams:
                body = s.read_to_close(timeout=10).decode()
                end = json.loads(re.search(r"event: end\r?\ndata: (.*)", body).group(1))  # type: ignore[union-attr]
                assert end["status"] == "queued"
            web.wait(timeout=15)
            assert time.monotonic() - started < 10
        finally:
            for s in streams:
                s.close()


def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is and read the answer to its end (gunicorn closes after an error)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_the_errors_gunicorn_answers_itself_are_json_too(tmp_path: Path) -> None:
    with private_api(tmp_path, "gunicorn-errors", {}) as api:
        host = api.url.removeprefix("http://")
        cases = {
            "long request line": (f"GET /api/health?{'q' * 9000} HTTP/1.1\r\nHost: {host}\r\n\r\n", 414,
                                  "request_uri_too_large", "8190 bytes"),
            "large header": (f"GET /api/health HTTP/1.1\r\nHost: {host}\r\nX-Big: {'h' * 9000}\r\n\r\n", 431,
                             "request_header_fields_too_large", "8190 bytes a header"),
            "too many headers": (f"GET /api/health HTTP/1.1\r\nHost: {host}\r\n"
                                 + "".join(f"X-H{i}: v\r\n" for i in range(150)) + "\r\n", 431,
                                 "request_header_fields_too_large", "100 headers"),
            "not HTTP": ("BREW /pot HTCPCP/1.0\r\n\r\n", 400, "bad_request", "not valid HTTP"),
        }
        for what, (request, status, code, words) in cases.items():
            got, headers, body = raw_exchange(api.url, request.encode())
            assert got == status, (what, got, body[:200])
            assert headers["content-type"] == "application/json", (what, headers)
            assert headers["x-content-type-options"] == "nosniff"
            error = json.loads(body)["error"]
            assert error["code"] == code and words in error["message"], (what, error)
        # Under the limits, the app answers as ever.
        fine = requests.get(f"{api.url}/api/health?{'q' * 4000}", headers={"X-Big": "h" * 8000}, timeout=30)
        assert fine.status_code == 200
