"""A lean HTTP client for the benchmark: streamed multipart uploads and following a job.

``http.client`` rather than ``requests``: the file is streamed from disk in 1 MiB blocks
(``requests`` builds a multipart body in memory), and the client itself should add as
little as possible to what is measured.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BLOCK = 2**20
FINAL = ("completed", "failed", "cancelled")


class BenchError(RuntimeError):
    pass


@dataclass
class Upload:
    status: int
    body: dict[str, Any]
    started: float  # time.time() when the request started
    seconds: float  # request start to the answer read
    sent_bytes: int


@dataclass
class Followed:
    task_id: str
    status: str
    done_at: float  # time.time() when the client saw the final state
    events: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


class Client:
    def __init__(self, base_url: str, timeout: float = 600.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout

    def _conn(self, timeout: float | None = None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)

    # -- plain requests -------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = self._conn(30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, raw.decode(errors="replace")
        finally:
            conn.close()

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise BenchError(f"GET {path}: {status} {body}")
        return body

    def clear_cache(self) -> None:
        status, body = self.request("POST", "/api/cache/clear")
        if status != 200:
            raise BenchError(f"POST /api/cache/clear: {status} {body}")

    # -- uploads --------------------------------------------------------------------------
    def upload(self, path: Path, fields: dict[str, str] | None = None,
               route: str = "/api/transcribe/async") -> Upload:
        """POST ``path`` as the multipart field ``file``, streamed; time it to the answer."""
        boundary = f"bench{uuid.uuid4().hex}"
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in (fields or {}).items()
        )
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = path.stat().st_size
        length = len(head) + size + len(tail)
        started = time.time()
        t0 = time.perf_counter()
        conn = self._conn()
        try:
            conn.putrequest("POST", route)
            conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
            conn.send(head)
            with path.open("rb") as fh:
                while block := fh.read(BLOCK):
                    conn.send(block)
            conn.send(tail)
            resp = conn.getresponse()
            raw = resp.read()
            seconds = time.perf_counter() - t0
        finally:
            conn.close()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"raw": raw[:200].decode(errors="replace")}
        return Upload(resp.status, body, started, seconds, length)

    def submit(self, path: Path, fields: dict[str, str] | None = None) -> Upload:
        up = self.upload(path, fields)
        if up.status != 202:
            raise BenchError(f"upload of {path.name} answered {up.status}: {up.body}")
        return up

    # -- following a job ------------------------------------------------------------------
    def follow_sse(self, task_id: str, timeout: float) -> Followed:
        """Read the job's Server-Sent Events until its final state."""
        conn = self._conn(timeout)
        events = 0
        try:
            conn.request("GET", f"/api/transcribe/async/{task_id}/events",
                         headers={"Accept": "text/event-stream"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise BenchError(f"events of {task_id}: {resp.status} {resp.read()[:200]!r}")
            for name, data in _sse(resp):
                events += 1
                if name == "status" and data.get("status") in FINAL:
                    return Followed(task_id, data["status"], time.time(), events, data)
                if name == "end":
                    return Followed(task_id, str(data.get("status")), time.time(), events, data)
        finally:
            conn.close()
        raise BenchError(f"the event stream of {task_id} ended before the job did")

    def follow_poll(self, task_id: str, timeout: float, interval: float = 0.02) -> Followed:
        """Poll the status URL every ``interval`` seconds until the job is final."""
        deadline = time.monotonic() + timeout
        conn = self._conn(30)
        polls = 0
        try:
            while time.monotonic() < deadline:
                conn.request("GET", f"/api/transcribe/async/status/{task_id}")
                resp = conn.getresponse()
                body = json.loads(resp.read())
                polls += 1
                if body.get("status") in FINAL:
                    return Followed(task_id, body["status"], time.time(), polls, body)
                time.sleep(interval)
        finally:
            conn.close()
        raise BenchError(f"job {task_id} not final after {timeout:.0f} s")

    def follow(self, task_id: str, mode: str, timeout: float) -> Followed:
        return self.follow_sse(task_id, timeout) if mode == "sse" else self.follow_poll(task_id, timeout)


def _sse(resp: http.client.HTTPResponse) -> Iterator[tuple[str, dict[str, Any]]]:
    name, data = "message", ""
    while True:
        line = resp.readline()
        if not line:
            return
        text = line.decode().rstrip("\r\n")
        if text == "":
            if data:
                yield name, json.loads(data)
            name, data = "message", ""
        elif text.startswith(":"):
            continue
        elif text.startswith("event:"):
            name = text[6:].strip()
        elif text.startswith("data:"):
            data += text[5:].strip()
