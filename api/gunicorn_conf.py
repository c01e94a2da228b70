"""gunicorn's settings for the web process that depend on the machine (the Procfile names the
rest and passes this file with ``--config``; a ``--workers`` on the command line still wins).

With the gevent worker a waiting client costs a parked greenlet, not a thread, so a worker
process serves its ``--worker-connections`` clients at once and more processes only add CPU:
one per core the process may run on. ``WEB_CONCURRENCY``, gunicorn's own variable, overrides.

gunicorn reads this file by path; nothing in it imports the service (which would import Redis,
pika and Dramatiq in the master, before each worker's gevent monkey-patching).
"""

import os
from typing import Any

workers = int(os.environ.get("WEB_CONCURRENCY") or 0) or len(os.sched_getaffinity(0)) or 1


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
