"""The one exception of the client: a request that did not succeed, and why."""

from __future__ import annotations

import requests

# The codes of ApiError that mean no HTTP answer came back.
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
BAD_RESPONSE = "bad_response"


class ApiError(Exception):
    """A request that did not succeed: the service's answer, or why none came.

    ``status`` is the HTTP status, or ``None`` when the service could not be reached
    (``code`` is then ``unreachable``) or did not answer in time (``code`` ``timeout``).
    """

    def __init__(self, status: int | None, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f"HTTP {self.status}, " if self.status is not None else ""
        field = f", field {self.field}" if self.field else ""
        return f"{self.message} ({where}{self.code}{field})"

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        """The service's JSON error body, or a plain description when the body is not one."""
        code, message, field = f"http_{response.status_code}", "", None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            code = str(error.get("code") or code)
            message = str(error.get("message") or "")
            field = str(error["field"]) if error.get("field") else None
        if not message:
            text = response.text.strip()
            message = text[:200] if text and not text.startswith("<") else (response.reason or "request failed")
        return cls(response.status_code, code, message, field)
