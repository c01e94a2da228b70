"""A small Python client for the whisper-pipeline HTTP API, and the ``whisper-pipeline`` command.

>>> client = Client("http://localhost:8511")
>>> task_id = client.submit(Path("meeting.m4a"), {"language": "en"})["task_id"]
>>> for event in client.events(task_id):
...     print(event.name, event.data)
>>> srt_bytes = client.result(task_id, "srt")

Every failure is one exception, :class:`ApiError`, carrying the HTTP status (``None`` when
no answer came at all) and the service's error ``code`` and ``message``. The command-line
tool (:mod:`client.cli`) is a thin layer over this class.

The package needs only ``requests``: it imports nothing of the service, so it installs and
starts quickly on any machine that talks to one.
"""

from __future__ import annotations

from client.errors import BAD_RESPONSE, TIMEOUT, UNREACHABLE, ApiError
from client.events import Event, parse_sse
from client.http import DEFAULT_URL, FINAL_STATES, FORMATS, Client
from client.multipart import UploadProgress

__all__ = [
    "BAD_RESPONSE",
    "DEFAULT_URL",
    "FINAL_STATES",
    "FORMATS",
    "TIMEOUT",
    "UNREACHABLE",
    "ApiError",
    "Client",
    "Event",
    "UploadProgress",
    "parse_sse",
]
