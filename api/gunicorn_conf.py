"""gunicorn's settings for the web process that depend on the machine (the Procfile names the
rest and passes this file with ``--config``; a ``--workers`` on the command line still wins).

With the gevent worker a waiting client costs a parked greenlet, not a thread, so a worker
process serves its ``--worker-connections`` clients at once and more processes only add CPU:
one per core the process may run on. ``WEB_CONCURRENCY``, gunicorn's own variable, overrides.

gunicorn reads this file by path; nothing in it imports the service (which would import Redis,
pika and Dramatiq in the master, before each worker's gevent monkey-patching).
"""

import json
import os
from typing import Any

workers = int(os.environ.get("WEB_CONCURRENCY") or 0) or len(os.sched_getaffinity(0)) or 1

# What gunicorn reads of a request before the app sees it: the request line (method, path and
# query), each header, and how many headers. gunicorn answers past these itself, before the
# app exists for the request; ``json_errors`` makes that answer the service's JSON too.
limit_request_line = 8190  # gunicorn's most: longer lines are refused at any setting
limit_request_field_size = 8190
limit_request_fields = 100

# gunicorn's own answers, in the service's words (status: code, message).
_ERRORS = {
    414: ("request_uri_too_large", f"The request line (method, path and query) is longer than this service "
                                   f"accepts ({limit_request_line} bytes)."),
    431: ("request_header_fields_too_large", f"The request's headers are larger than this service accepts "
                                             f"({limit_request_field_size} bytes a header, {limit_request_fields} "
                                             "headers)."),
    403: ("forbidden", "This request is refused."),
    417: ("expectation_failed", "The Expect header asks for something this service does not do."),
    500: ("internal_error", "Something went wrong on our side; it was logged."),
    501: ("not_implemented", "This transfer coding is not supported."),
}
_HEADERS = ("Connection: close\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; sandbox\r\n")


def json_error(status: int, reason: str, detail: str) -> bytes:
    """The whole HTTP answer gunicorn sends for a request it refused, as the app answers errors:
    ``{"error": {"code", "message"}}`` (gunicorn's own is an HTML page)."""
    code, message = _ERRORS.get(status, ("bad_request", "The request is not valid HTTP"))
    if status not in _ERRORS and detail:
        message = f"{message}: {detail[:200]}."
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = f"HTTP/1.1 {status} {reason}\r\n{_HEADERS}Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


def json_errors() -> None:
    """Replace gunicorn's HTML error page (``gunicorn.util.write_error``, which its workers look
    up at each error) with ``json_error``."""
    from gunicorn import util

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        util.write_nonblock(sock, json_error(int(status_int), reason, mesg))

    util.write_error = write_error


def post_fork(server: Any, worker: Any) -> None:  # gunicorn calls it in each worker, as it starts
    json_errors()


def post_worker_init(worker: Any) -> None:  # gunicorn calls it in each worker, after loading the app
    """Ends the worker's event streams as soon as it is told to stop.

    On SIGTERM gunicorn stops accepting and waits up to ``graceful_timeout`` (30 s) for the
    requests in flight; an event stream on a running job never ends by itself, so without this
    every stop (a deploy, ``docker compose stop``) waited the whole timeout and then cut the
    streams. Each stream now ends with its ``end`` event (the job still running) and the client
    reconnects; uploads and synchronous waits in flight still get their graceful time.
    """
    import threading
    import time

    def watch() -> None:
        while worker.alive:
            time.sleep(0.5)  # a greenlet's sleep: the worker is monkey-patched by now
        from api.state import end_streams

        end_streams(worker.wsgi)

    threading.Thread(target=watch, name="end-streams-on-stop", daemon=True).start()
