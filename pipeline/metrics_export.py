"""The service's metrics read back from Redis as Prometheus metric families, for the API's
``/metrics`` (see ``pipeline.metrics`` for how they are counted)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import cast

import pika
import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pipeline.jobs import FINAL_STATES, STATE_SECONDS_BUCKETS, State
from pipeline.keys import CACHE_LRU_KEY, CACHE_STATS_KEY, COUNTERS_KEY, METRICS_KEY, STAGE_SECONDS_KEY
from pipeline.queues import QUEUES
from pipeline.workers import live_workers

log = logging.getLogger(__name__)

QUEUE_DEPTH_TTL_SECONDS = 5.0


class QueueDepth:
    """Messages waiting in each queue, asked of RabbitMQ at most every few seconds."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._at = 0.0
        self._depths: dict[str, int] = {}

    def read(self) -> dict[str, int]:
        with self._lock:
            if time.monotonic() - self._at > QUEUE_DEPTH_TTL_SECONDS:
                self._depths = self._ask()
                self._at = time.monotonic()
            return dict(self._depths)

    def _ask(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        params = pika.URLParameters(self._url)
        params.socket_timeout = 2
        params.connection_attempts = 1
        try:
            connection = pika.BlockingConnection(params)
        except Exception as exc:  # noqa: BLE001 - metrics must not fail because RabbitMQ is down
            log.warning("queue depth unavailable: %s", exc)
            return depths
        try:
            for queue in QUEUES:
                for name in (queue, f"{queue}.DQ"):
                    channel = connection.channel()
                    try:
                        # Passive: ask about the queue without creating it.
                        declared = channel.queue_declare(queue=name, passive=True)
                        depths[name] = int(declared.method.message_count)
                        channel.close()
                    except pika.exceptions.ChannelClosedByBroker:
                        depths[name] = 0  # not declared yet: nothing has waited in it
        finally:
            connection.close()
        return depths


class ServiceCollector(Collector):
    def __init__(self, client: redis.Redis, queue_depth: QueueDepth) -> None:
        self.redis = client
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        jobs = cast(dict[str, str], self.redis.hgetall(METRICS_KEY))
        reached = CounterMetricFamily("whisper_jobs", "Jobs that reached each state", labels=["state"])
        current = GaugeMetricFamily("whisper_jobs_in_state", "Jobs in each non-final state now",
                                    labels=["state"])
        for state in State:
            reached.add_metric([state.value], float(jobs.get(f"reached:{state.value}", 0)))
            if state.value not in FINAL_STATES:
                current.add_metric([state.value], max(0.0, float(jobs.get(f"current:{state.value}", 0))))
        yield reached
        yield current

        seconds = cast(dict[str, str], self.redis.hgetall(STAGE_SECONDS_KEY))
        histogram = HistogramMetricFamily(
            "whisper_state_duration_seconds",
            "Time jobs spent in each state (queued, extracting, transcribing) before moving on",
            labels=["state"])
        for state in (State.QUEUED, State.EXTRACTING, State.TRANSCRIBING):
            count = float(seconds.get(f"{state.value}:count", 0))
            buckets = [(f"{b:g}", float(seconds.get(f"{state.value}:le:{b:g}", 0)))
                       for b in STATE_SECONDS_BUCKETS]
            buckets.append(("+Inf", count))
            histogram.add_metric([state.value], buckets, float(seconds.get(f"{state.value}:sum", 0)))
        yield histogram

        counters = cast(dict[str, str], self.redis.hgetall(COUNTERS_KEY))
        yield CounterMetricFamily("whisper_audio_seconds_transcribed",
                                  "Seconds of audio transcribed (cache hits excluded)",
                                  value=float(counters.get("audio_seconds", 0)))
        webhooks = CounterMetricFamily("whisper_webhook_deliveries", "Webhook delivery attempts by outcome",
                                       labels=["outcome"])
        for outcome in ("delivered", "retrying", "failed"):
            webhooks.add_metric([outcome], float(counters.get(f"webhook:{outcome}", 0)))
        yield webhooks

        cache = cast(dict[str, str], self.redis.hgetall(CACHE_STATS_KEY))
        yield CounterMetricFamily("whisper_cache_hits", "Transcript cache hits",
                                  value=float(cache.get("hits", 0)))
        yield CounterMetricFamily("whisper_cache_misses", "Transcript cache misses",
                                  value=float(cache.get("misses", 0)))
        yield GaugeMetricFamily("whisper_cache_entries", "Entries in the transcript cache",
                                value=float(cast(int, self.redis.zcard(CACHE_LRU_KEY))))

        depth = GaugeMetricFamily("whisper_queue_depth", "Messages waiting in each RabbitMQ queue "
                                  "(.DQ: delayed retries)", labels=["queue"])
        for queue, waiting in sorted(self.queue_depth.read().items()):
            depth.add_metric([queue], float(waiting))
        yield depth

        workers = GaugeMetricFamily("whisper_workers", "Live worker processes (from heartbeats)",
                                    labels=["queue", "device"])
        counts: dict[tuple[str, str], int] = {}
        for worker in live_workers(self.redis):
            for queue in worker.get("queues", []):
                key = (queue, str(worker.get("device", "")))
                counts[key] = counts.get(key, 0) + 1
        for (queue, device), n in sorted(counts.items()):
            workers.add_metric([queue, device], float(n))
        yield workers
