"""Service metrics kept in Redis, so that every API and worker process adds to the same numbers,
and rendered in Prometheus's text format by whichever API process is scraped.

Job state counts and the time spent in each state are written by the transition script
(``pipeline.jobs``); this module records the rest. Reading it all back as Prometheus metrics is
``pipeline.metrics_export``'s, imported only by the API: a worker must not import
prometheus_client before Dramatiq's Prometheus middleware has chosen its multi-process mode,
or the worker's own counters never reach its exporter.
"""

from __future__ import annotations

import redis

from pipeline.keys import COUNTERS_KEY


def count_audio_seconds(client: redis.Redis, seconds: float) -> None:
    client.hincrbyfloat(COUNTERS_KEY, "audio_seconds", seconds)


def count_webhook(client: redis.Redis, outcome: str) -> None:
    """``outcome``: delivered, retrying or failed."""
    client.hincrby(COUNTERS_KEY, f"webhook:{outcome}", 1)
