"""client/http.py: the Client against a small HTTP server on loopback: what it sends, what it makes of the
answers, and the ApiError it raises when no usable answer comes."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.formparser import parse_form_data

from client.errors import BAD_RESPONSE, TIMEOUT, UNREACHABLE, ApiError
from client.events import Event
from client.http import Client


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    # A stream, as the service sends one: each chunk flushed as it is written (chunked encoding).
    chunks: tuple[bytes, ...] = ()
    finish: bool = True  # False: the connection drops before the stream's last chunk
    hold: threading.Event | None = None  # given: the stream waits for it after its chunks


@dataclass
class Service:
    url: str
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    seen: list[Request] = field(default_factory=list)

    def answer(self, method: str, path: str, answer: Answer) -> None:
        self.answers[(method, path)] = answer


@pytest.fixture
def service() -> Iterator[Service]:
    svc = Service(url="")  # its URL once the server has a port

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # for chunked answers

        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            svc.seen.append(Request(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body))
            answer = svc.answers.get((self.command, parts.path)) or Answer(
                404, b'{"error": {"code": "not_found", "message": "No such route."}}')
            self.close_connection = True
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Connection", "close")
            if not answer.chunks:
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in answer.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            if answer.hold is not None:
                answer.hold.wait(10)
            if answer.finish:
                self.wfile.write(b"0\r\n\r\n")

        do_GET = do_POST = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    svc.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield svc
    finally:
        for answer in svc.answers.values():
            if answer.hold is not None:
                answer.hold.set()
        server.shutdown()
        server.server_close()


def test_submit_streams_the_file_and_the_options_as_form_fields(service: Service, tmp_path: Path) -> None:
    service.answer("POST", "/api/transcribe/async", Answer(202, b'{"task_id": "t1", "status": "queued"}'))
    audio = tmp_path / "talk.wav"
    audio.write_bytes(b"RIFF" + bytes(5000))
    sent: list[tuple[int, int]] = []
    answer = Client(service.url).submit(
        audio, {"language": "en", "word_timestamps": True, "vad_filter": False, "beam_size": 5, "model": None},
        progress=lambda done, total: sent.append((done, total)))
    assert answer == {"task_id": "t1", "status": "queued"}
    (request,) = service.seen
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": request.headers["Content-Type"],
               "CONTENT_LENGTH": request.headers["Content-Length"], "wsgi.input": io.BytesIO(request.body)}
    _, form, files = parse_form_data(environ)
    # None is left out; booleans are the words the service's form parser reads.
    assert dict(form) == {"language": "en", "word_timestamps": "true", "vad_filter": "false", "beam_size": "5"}
    assert files["file"].filename == "talk.wav" and files["file"].read() == audio.read_bytes()
    assert sent[-1] == (len(request.body), len(request.body))


def test_the_api_key_and_user_agent_go_with_every_request(service: Service) -> None:
    service.answer("GET", "/api/transcribe/async/status/t1", Answer(body=b'{"status": "queued"}'))
    assert Client(service.url + "/", api_key="sekrit").status("t1") == {"status": "queued"}
    (request,) = service.seen
    assert request.headers["Authorization"] == "Bearer sekrit"
    assert request.headers["User-Agent"] == "whisper-pipeline-client"


def test_a_task_id_is_quoted_into_one_path_segment(service: Service) -> None:
    with pytest.raises(ApiError) as caught:  # no job there: the server answers 404
        Client(service.url).cancel("a/b c?d")
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert [(r.method, r.path) for r in service.seen] == [("DELETE", "/api/transcribe/async/a%2Fb%20c%3Fd")]


def test_query_parameters_are_sent_only_when_given(service: Service) -> None:
    srt = Answer(body=b"1\n00:00:00,000 --> ...", content_type="text/plain")
    service.answer("GET", "/api/transcribe/async/t1/result", srt)
    service.answer("GET", "/api/transcribe/async", Answer(body=b'{"jobs": [], "next_cursor": null}'))
    client = Client(service.url)
    assert client.result("t1", "srt", chars_per_caption=32) == b"1\n00:00:00,000 --> ..."
    assert client.result("t1") == b"1\n00:00:00,000 --> ..."
    assert client.list(limit=5) == {"jobs": [], "next_cursor": None}
    assert [r.query for r in service.seen] == [
        {"format": ["srt"], "chars_per_caption": ["32"]}, {"format": ["json"]}, {"limit": ["5"]}]


def test_an_error_answer_raises_the_services_code_and_field(service: Service) -> None:
    service.answer("GET", "/api/transcribe/async/t1/search", Answer(
        422, b'{"error": {"code": "invalid_option", "message": "No words.", "field": "words"}}'))
    with pytest.raises(ApiError) as caught:
        Client(service.url).search("t1", "")
    assert (caught.value.status, caught.value.code, caught.value.field) == (422, "invalid_option", "words")
    assert service.seen[0].query == {}  # an empty value is not sent at all


@pytest.mark.parametrize(("body", "what"), [(b"<html>ok</html>", "something that is not JSON"),
                                            (b"[1, 2]", "unexpected JSON")])
def test_an_answer_that_is_not_a_json_object_is_a_bad_response(service: Service, body: bytes, what: str) -> None:
    service.answer("GET", "/api/transcribe/async/t1/sentences", Answer(body=body))
    with pytest.raises(ApiError) as caught:
        Client(service.url).sentences("t1")
    assert (caught.value.status, caught.value.code) == (200, BAD_RESPONSE)
    assert caught.value.message == f"The service answered GET /api/transcribe/async/t1/sentences with {what}."


def test_a_closed_port_is_unreachable_in_the_sockets_words() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ApiError) as caught:
        Client(f"http://127.0.0.1:{port}", timeout=5).status("t1")
    assert (caught.value.status, caught.value.code) == (None, UNREACHABLE)
    assert caught.value.message == f"Could not reach http://127.0.0.1:{port}: connection refused"


def test_a_service_that_never_answers_is_a_timeout() -> None:
    # The kernel completes the connection from the backlog; nobody ever reads or answers it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ApiError) as caught:
            Client(url, timeout=0.2).status("t1")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        None, TIMEOUT, f"{url} did not answer in time.")


def test_events_are_json_objects_and_other_data_is_wrapped_or_skipped(service: Service) -> None:
    stream = (b"event: status\ndata: {\"status\": \"queued\"}\n\n", b"event: segment\ndata: not json\n\n",
              b"event: progress\ndata: 0.5\n\n", b"event: end\ndata: {\"status\": \"completed\"}\n\n")
    service.answer("GET", "/api/transcribe/async/t1/events", Answer(chunks=stream, content_type="text/event-stream"))
    got = list(Client(service.url).events("t1"))
    assert got == [Event("status", {"status": "queued"}), Event("progress", {"data": 0.5}),
                   Event("end", {"status": "completed"})]
    assert service.seen[0].headers["Accept"] == "text/event-stream"


def test_an_event_stream_cut_short_is_unreachable(service: Service) -> None:
    first = b"event: status\ndata: {\"status\": \"transcribing\"}\n\n"
    service.answer("GET", "/api/transcribe/async/t1/events",
                   Answer(chunks=(first,), content_type="text/event-stream", finish=False))
    got: list[Event] = []
    with pytest.raises(ApiError) as caught:
        got.extend(Client(service.url).events("t1"))
    assert got == [Event("status", {"status": "transcribing"})]
    assert (caught.value.status, caught.value.code) == (None, UNREACHABLE)
    assert caught.value.message.startswith("The event stream broke: ")


def test_an_event_stream_that_goes_quiet_is_a_timeout(service: Service) -> None:
    first = b"event: status\ndata: {\"status\": \"transcribing\"}\n\n"
    service.answer("GET", "/api/transcribe/async/t1/events", Answer(
        chunks=(first,), content_type="text/event-stream", hold=threading.Event()))
    got: list[Event] = []
    with pytest.raises(ApiError) as caught:
        got.extend(Client(service.url).events("t1", read_timeout=0.2))
    assert got == [Event("status", {"status": "transcribing"})]
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        None, TIMEOUT, "The event stream went quiet for too long.")


def test_from_env_reads_the_url_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPER_PIPELINE_URL", "http://speech.example:9000/")
    monkeypatch.setenv("WHISPER_PIPELINE_API_KEY", "k1")
    client = Client.from_env(timeout=3.0)
    assert (client.url, client.timeout, client.session.headers["Authorization"]) == (
        "http://speech.example:9000", 3.0, "Bearer k1")
    monkeypatch.delenv("WHISPER_PIPELINE_URL")
    monkeypatch.setenv("WHISPER_PIPELINE_API_KEY", "")
    client = Client.from_env()
    assert client.url == "http://localhost:8511" and "Authorization" not in client.session.headers

