"""The whisper-pipeline HTTP API over ``requests``."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import requests
from urllib3.exceptions import ReadTimeoutError

from client.errors import BAD_RESPONSE, TIMEOUT, UNREACHABLE, ApiError
from client.events import Event, parse_sse
from client.multipart import MultipartBody, UploadProgress

log = logging.getLogger(__name__)

DEFAULT_URL = "http://localhost:8511"
# The service's result formats and final job states, restated here so that the client needs
# nothing of the server's code.
FORMATS = ("json", "verbose_json", "text", "srt", "vtt", "tsv", "rttm")
FINAL_STATES = frozenset({"completed", "failed", "cancelled"})


class Client:
    """The whisper-pipeline API over ``requests``.

    ``timeout`` bounds every request (connecting, and each wait for bytes of the answer);
    ``api_key``, when given, is sent as ``Authorization: Bearer <key>``.
    """

    def __init__(self, url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "whisper-pipeline-client"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """A client for ``WHISPER_PIPELINE_URL`` with ``WHISPER_PIPELINE_API_KEY``."""
        return cls(os.environ.get("WHISPER_PIPELINE_URL") or DEFAULT_URL,
                   api_key=os.environ.get("WHISPER_PIPELINE_API_KEY") or None, **kwargs)

    def _request(self, method: str, path: str, *, timeout: float | tuple[float, float] | None = None,
                 **kwargs: Any) -> requests.Response:
        url = self.url + path
        log.debug("%s %s", method, url)
        try:
            response = self.session.request(method, url, timeout=timeout or self.timeout, **kwargs)
        except requests.ConnectTimeout as exc:
            raise ApiError(None, UNREACHABLE, f"Could not connect to {self.url}: the connection "
                           "timed out.") from exc
        except requests.Timeout as exc:
            raise ApiError(None, TIMEOUT, f"{self.url} did not answer in time.") from exc
        except requests.ConnectionError as exc:
            raise ApiError(None, UNREACHABLE, f"Could not reach {self.url}: {_reason(exc)}") from exc
        except requests.RequestException as exc:
            raise ApiError(None, UNREACHABLE, f"The request to {url} failed: {exc}") from exc
        if response.status_code >= 400:
            error = ApiError.from_response(response)
            response.close()
            log.debug("%s %s -> %s", method, url, error)
            raise error
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError as exc:
            raise ApiError(response.status_code, BAD_RESPONSE,
                           f"The service answered {method} {path} with something that is not JSON.") from exc
        if not isinstance(body, dict):
            raise ApiError(response.status_code, BAD_RESPONSE,
                           f"The service answered {method} {path} with unexpected JSON.")
        return body

    def submit(self, path: Path | str, options: Mapping[str, Any] | None = None, *,
               progress: UploadProgress | None = None) -> dict[str, Any]:
        """Upload a recording for asynchronous transcription.

        ``options`` are the service's form fields (``engine``, ``model``, ``language``, ``task``,
        ``word_timestamps``, ``vad_filter``, ``condition_on_previous_text``, ``initial_prompt``,
        ``temperature``, ``beam_size``,
        ``webhook_url``, ...); ``None`` values are left out and booleans sent as true/false.
        Answers ``{task_id, status, status_url, result_url, cached}``.
        """
        path = Path(path)
        fields = {name: _form_value(value) for name, value in (options or {}).items() if value is not None}
        body = MultipartBody(fields, "file", path, progress)  # OSError when it cannot be read
        try:
            # The upload itself may take long: only the connection uses the short timeout.
            return self._json("POST", "/api/transcribe/async", data=body,
                              headers={"Content-Type": body.content_type},
                              timeout=(self.timeout, max(self.timeout, 300.0)))
        finally:
            body.close()

    def status(self, task_id: str) -> dict[str, Any]:
        """Where a job stands; ``result`` is included once it is completed."""
        return self._json("GET", f"/api/transcribe/async/status/{_quote(task_id)}")

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a job; a finished job raises ApiError with status 409."""
        return self._json("DELETE", f"/api/transcribe/async/{_quote(task_id)}")

    def result(self, task_id: str, fmt: str = "json", *, chars_per_caption: int | None = None,
               max_lines: int | None = None) -> bytes:
        """A completed job's transcript in ``fmt`` (one of FORMATS), as the service sent it;
        srt and vtt re-flowed to ``chars_per_caption`` (and ``max_lines``) where given."""
        params: dict[str, Any] = {"format": fmt}
        if chars_per_caption is not None:
            params["chars_per_caption"] = chars_per_caption
        if max_lines is not None:
            params["max_lines"] = max_lines
        response = self._request("GET", f"/api/transcribe/async/{_quote(task_id)}/result", params=params)
        return response.content

    def sentences(self, task_id: str) -> dict[str, Any]:
        """``{sentences: [{text, start, end, speaker?, channel?, words?}]}`` of a completed job."""
        return self._json("GET", f"/api/transcribe/async/{_quote(task_id)}/sentences")

    def paragraphs(self, task_id: str) -> dict[str, Any]:
        """``{paragraphs: [...]}``, shaped like ``sentences``."""
        return self._json("GET", f"/api/transcribe/async/{_quote(task_id)}/paragraphs")

    def search(self, task_id: str, words: str) -> dict[str, Any]:
        """``{matches: [{text, count, timestamps}]}`` for comma-separated ``words``."""
        return self._json("GET", f"/api/transcribe/async/{_quote(task_id)}/search", params={"words": words})

    def redacted_audio(self, task_id: str) -> bytes:
        """The WAV with redacted spans toned out (jobs submitted with redact_pii_audio)."""
        return self._request("GET", f"/api/transcribe/async/{_quote(task_id)}/redacted-audio").content

    def list(self, *, status: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> dict[str, Any]:
        """One page of the caller's jobs, newest first: ``{jobs, next_cursor}``."""
        params = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v is not None}
        return self._json("GET", "/api/transcribe/async", params=params)

    def events(self, task_id: str, *, read_timeout: float | None = None) -> Generator[Event, None, None]:
        """A job's Server-Sent Events: ``status`` first, ``segment`` ones while it is decoded,
        and ``end`` (data: the job's summary) last.

        The service sends a keep-alive after 15 quiet seconds, so ``read_timeout`` (default:
        the client's timeout, at least 30 s) should stay above that. A stream that breaks
        raises ApiError (``unreachable`` or ``timeout``).
        """
        timeout = read_timeout if read_timeout is not None else max(self.timeout, 30.0)
        response = self._request("GET", f"/api/transcribe/async/{_quote(task_id)}/events",
                                 stream=True, timeout=(self.timeout, timeout),
                                 headers={"Accept": "text/event-stream"})
        try:
            for name, data in parse_sse(response.iter_content(chunk_size=None)):
                try:
                    payload = json.loads(data)
                except ValueError:
                    log.debug("skipping an event whose data is not JSON: %r", data)
                    continue
                yield Event(name, payload if isinstance(payload, dict) else {"data": payload})
        except requests.RequestException as exc:
            if _read_timed_out(exc):
                raise ApiError(None, TIMEOUT, "The event stream went quiet for too long.") from exc
            raise ApiError(None, UNREACHABLE, f"The event stream broke: {_reason(exc)}") from exc
        finally:
            response.close()


def _read_timed_out(exc: requests.RequestException) -> bool:
    # Once the body is streaming, requests reports urllib3's read timeout as a ConnectionError
    # wrapping it, not as requests.Timeout.
    return isinstance(exc, requests.Timeout) or any(isinstance(arg, ReadTimeoutError) for arg in exc.args)


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _quote(task_id: str) -> str:
    from urllib.parse import quote

    return quote(task_id, safe="")


def _reason(exc: Exception) -> str:
    """The innermost reason of a requests/urllib3 error, which is the one a person can act on."""
    reason: BaseException = exc
    while True:
        inner = reason.args[0] if reason.args and isinstance(reason.args[0], BaseException) else None
        inner = inner or getattr(reason, "reason", None)
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = str(reason)
    # urllib3 wraps the socket's error in the connection's description: keep the socket's words.
    errno = re.search(r"\[Errno -?\d+\] (.+?)\)*'?\)*$", text)
    if errno:
        return errno.group(1).lower()
    return text or type(reason).__name__
