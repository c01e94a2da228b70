"""What a stage needs to run in a worker, built once per process from the settings: the
stores (``pipeline.stores``) and the models."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

from pipeline.settings import Settings
from pipeline.stores import Stores, open_stores
from pipeline.worker.engines import ModelCache


@dataclass
class Context(Stores):
    models: ModelCache = field(repr=False, kw_only=True)
    # Live sessions this process decodes at once: its worker threads, when it serves the live
    # queue (set as the worker boots).
    live_decoders: int = field(default=1, kw_only=True)


def build_context(settings: Settings) -> Context:
    settings.ensure_dirs()
    stores = open_stores(settings)
    return Context(
        settings=stores.settings,
        redis=stores.redis,
        jobs=stores.jobs,
        cache=stores.cache,
        storage=stores.storage,
        # Models load lazily on first use, so building a context never loads one.
        models=ModelCache(settings),
    )


_context_lock = threading.Lock()


@functools.cache
def _process_context() -> Context:
    return build_context(Settings.from_env())


def worker_context() -> Context:
    """The worker process's context, from its environment, built on first use. One per process:
    the heartbeat and the model preload ask from threads of their own at boot, and
    ``functools.cache`` alone would let each build one (a model loaded into the other's cache)."""
    with _context_lock:
        return _process_context()
