"""Benchmarks of the whole service against the engine called directly (``make bench``).

``python -m bench`` starts a private copy of the real stack (gunicorn and the Dramatiq
workers from the Procfile, on a RabbitMQ virtual host and a Redis database of its own),
measures it, prints the results and writes them into ``docs/benchmarks.md``. See that page
for what is measured and how.
"""
