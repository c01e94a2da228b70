"""One benchmark run's results: what bench.run measures and bench.render writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Results:
    started: str = ""
    finished: str = ""
    wall: float = 0.0
    command: str = ""
    commit: str = ""
    machine: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    processes: dict[str, str] = field(default_factory=dict)
    redis_db: int = 0
    vhost: str = ""
    follow: str = "sse"
    load_seconds: dict[str, float] = field(default_factory=dict)
    media_seconds: float = 0.0
    noise: dict[str, dict[str, float | str]] = field(default_factory=dict)
    recordings: dict[str, dict[str, Any]] = field(default_factory=dict)
    e2e: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # key -> runs
    direct: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # key -> runs
    direct_chunked: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # long recordings
    same_text: dict[str, bool] = field(default_factory=dict)
    wer: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> service / direct against the words
    plan: dict[str, float] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_warmup: dict[str, float] = field(default_factory=dict)
    probe: dict[str, float] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    storage: dict[str, Any] = field(default_factory=dict)
    concurrency: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    diarize: dict[str, Any] = field(default_factory=dict)
    meetings: dict[str, Any] = field(default_factory=dict)
    decoders: list[dict[str, Any]] = field(default_factory=list)
    pieces: list[dict[str, Any]] = field(default_factory=list)
    consistency: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, float] = field(default_factory=dict)  # MiB of PSS
    notes: list[str] = field(default_factory=list)
