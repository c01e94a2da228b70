"""api/submission.py: the upload streamed straight into storage, the form part named when one is too
large, the webhook fields checked, and a recording fetched by address (from a server on loopback)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask, request

from api.state import ApiState
from api.submission import (
    UPLOAD_TARGET,
    PartTracker,
    UploadRequest,
    _webhook_fields,
    cooperative_deadline,
    fetch,
    streams_upload,
    upload_writer,
)
from pipeline.errors import BadRequest, InvalidOption, UploadTooLarge
from pipeline.jobs import new_task_id
from pipeline.settings import Settings
from pipeline.storage.local import LocalStorage
from pipeline.uploads import UploadSink


def state_with(**settings: Any) -> ApiState:
    none = cast(Any, None)
    return ApiState(settings=Settings(**settings), redis=none, jobs=none, cache=none, broker=none, hub=none,
                    limits=none, storage=none)


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--B\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + b"--B--\r\n"


def test_the_tracker_names_the_last_part_header_that_went_by_and_counts_the_parts() -> None:
    body = multipart(("language", None, b"en"), ("file", "a.wav", b"RIFF...."))
    tracker = PartTracker(io.BytesIO(body))
    assert tracker.read() == body
    assert (tracker.parts, tracker.name, tracker.is_file) == (2, "file", True)


def test_a_header_split_between_reads_is_found_and_counted_once() -> None:
    body = multipart(("initial_prompt", None, b"x" * 50), ("hotwords", None, b"y"))
    tracker = PartTracker(io.BytesIO(body))
    while tracker.read(7):
        pass
    assert (tracker.parts, tracker.name, tracker.is_file) == (2, "hotwords", False)


def test_the_file_part_streams_into_the_sink_the_hook_opened(tmp_path: Path) -> None:
    storage, task_id = LocalStorage(tmp_path / "store"), new_task_id()
    app = Flask(__name__)
    app.request_class = UploadRequest
    sinks: list[UploadSink] = []

    def open_sink() -> UploadSink:
        sinks.append(UploadSink(storage, task_id, tmp_path / "scratch"))
        return sinks[-1]

    @app.before_request
    def target() -> None:
        request.environ[UPLOAD_TARGET] = open_sink

    @app.post("/up")
    @streams_upload
    def up() -> dict[str, Any]:
        uploaded = request.files["file"]  # reading the files parses the body, and opens the sink
        writer = upload_writer(request)
        assert writer is not None and uploaded.stream is writer
        writer.close()
        return {"size": writer.size, "form": request.form.to_dict(), "sha256": writer.sha256}

    body = multipart(("language", None, b"en"), ("file", "a.wav", b"0123456789"), ("extra", "b.wav", b"zz"))
    answer = app.test_client().post("/up", data=body, content_type="multipart/form-data; boundary=B")
    assert answer.json is not None and answer.json["size"] == 10 and answer.json["form"] == {"language": "en"}
    # Only the first file part goes to the store; a second one is spooled as Werkzeug would.
    assert len(sinks) == 1
    assert (tmp_path / "store" / sinks[0].key).read_bytes() == b"0123456789"
    assert getattr(up, "streams_upload", False) is True


def test_a_form_field_over_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config["MAX_FORM_MEMORY_SIZE"] = 1000
    app.post("/up")(lambda: request.form.to_dict())
    with app.test_request_context("/up", method="POST", data=multipart(("initial_prompt", None, b"p" * 5000)),
                                  content_type="multipart/form-data; boundary=B"):
        with pytest.raises(UploadTooLarge) as caught:
            request.form  # noqa: B018 - reading it parses the body
    assert caught.value.field == "initial_prompt"
    assert caught.value.message == ("The form field 'initial_prompt' is larger than this service accepts "
                                    "(1 kB a field; only the file may be large).")


def test_without_gevent_patched_sockets_the_deadline_does_nothing() -> None:
    with cooperative_deadline(0.001, TimeoutError("late")):
        total = sum(range(1000))
    assert total == 499500


@pytest.mark.parametrize(("form", "field"), [
    ({"webhook_auth_header_name": "Authorization"}, "webhook_url"),
    ({"webhook_url": "https://hook.example/x", "webhook_auth_header_name": "Authorization"},
     "webhook_auth_header_name"),
    ({"webhook_url": "https://hook.example/x", "webhook_auth_header_value": "v"}, "webhook_auth_header_name"),
    ({"webhook_url": "https://hook.example/x", "webhook_auth_header_name": "Cookie",
      "webhook_auth_header_value": "v"}, "webhook_auth_header_name"),
    ({"webhook_url": "ftp://hook.example/x"}, "webhook_url"),
])
def test_webhook_fields_that_cannot_work_are_refused_naming_the_field(form: dict[str, str], field: str) -> None:
    with pytest.raises((BadRequest, InvalidOption)) as caught:
        _webhook_fields(form, state_with(webhook_allow_private=True))
    assert caught.value.field == field


def test_webhook_fields_are_trimmed_and_recorded_pending() -> None:
    st = state_with(webhook_allow_private=True)
    assert _webhook_fields({}, st) == {}
    assert _webhook_fields({"webhook_url": "  "}, st) == {}
    assert _webhook_fields({"webhook_url": " https://hook.example/x ", "webhook_auth_header_name": " X-Api-Key ",
                            "webhook_auth_header_value": "s3cret"}, st) == {
        "webhook_url": "https://hook.example/x", "webhook_state": "pending",
        "webhook_auth_header_name": "X-Api-Key", "webhook_auth_header_value": "s3cret"}


class Served:
    """One recording on loopback: each GET is answered ``status``, ``headers`` and ``body``."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.body = body

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                for name, value in (headers or {"Content-Length": str(len(body))}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/talk.wav"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Served] = []

    def start(status: int, body: bytes, headers: dict[str, str] | None = None) -> Served:
        servers.append(Served(status, body, headers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def fetch_into(tmp_path: Path, url: str) -> tuple[UploadSink, Path]:
    storage, task_id = LocalStorage(tmp_path / "store"), new_task_id()
    sink = UploadSink(storage, task_id, tmp_path / "scratch")
    st = state_with(webhook_allow_private=True, max_upload_mb=1, fetch_timeout_seconds=10)
    with Flask(__name__).app_context():
        fetch(url, sink, st)
    return sink, tmp_path / "store" / sink.key


def test_a_fetched_recording_lands_in_the_uploads_place(tmp_path: Path, serve: Any) -> None:
    server = serve(200, b"RIFF" + b"\0" * 1000)
    sink, stored = fetch_into(tmp_path, server.url)
    sink.close()
    assert stored.read_bytes() == server.body and sink.size == 1004


def test_a_fetch_answered_with_an_error_status_is_a_bad_request_saying_it(tmp_path: Path, serve: Any) -> None:
    server = serve(404, b"gone")
    with pytest.raises(BadRequest, match=r"Fetching url answered HTTP 404\.") as caught:
        fetch_into(tmp_path, server.url)
    assert caught.value.field == "url"


def test_a_fetch_declared_or_found_too_large_is_refused_and_nothing_is_kept(tmp_path: Path, serve: Any) -> None:
    declared = serve(200, b"", {"Content-Length": str(2 * 2**20)})
    with pytest.raises(UploadTooLarge, match=r"larger than this service accepts \(1 MB\)"):
        fetch_into(tmp_path, declared.url)
    # No length said, and more than the limit sent: stopped as it passes the limit.
    sent = serve(200, b"x" * (2**20 + 1), {"Connection": "close"})
    with pytest.raises(UploadTooLarge):
        fetch_into(tmp_path, sent.url)
    assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))


def test_a_fetch_to_an_internal_address_is_refused_before_connecting(tmp_path: Path) -> None:
    sink = UploadSink(LocalStorage(tmp_path), new_task_id(), tmp_path / "scratch")
    with Flask(__name__).app_context(), pytest.raises(BadRequest) as caught:
        fetch("http://169.254.169.254/latest/meta-data", sink, state_with(webhook_allow_private=False))
    assert caught.value.field == "url"
