"""gunicorn's settings for the web process that depend on the machine (the Procfile names the
rest and passes this file with ``--config``; a ``--workers`` on the command line still wins).

With the gevent worker a waiting client costs a parked greenlet, not a thread, so a worker
process serves its ``--worker-connections`` clients at once and more processes only add CPU:
one per core the process may run on. ``WEB_CONCURRENCY``, gunicorn's own variable, overrides.

gunicorn reads this file by path; nothing in it imports the service (which would import Redis,
pika and Dramatiq in the master, before each worker's gevent monkey-patching).
"""

import os

workers = int(os.environ.get("WEB_CONCURRENCY") or 0) or len(os.sched_getaffinity(0)) or 1
