"""Publishing a job's decoded segments off the decode loop.

faster-whisper decodes lazily: the next window is only encoded once the callback for the last
segment has returned, so every Redis round trip made in the callback (the cancel flag, the
segment and progress, the cache claim's renewal) is time the engine stands still. The
publisher hands each segment to a thread of its own, which makes those calls while the engine
goes on; what that thread raises (``JobCancelled`` when the flag is set, a Redis error) is
raised in the decode loop at its next segment, and again when the publisher closes. A
cancelled job therefore stops within two segments rather than one.

Closing waits until every segment handed over is published, so a job's segments are all in
Redis before its state moves on (clients see them before ``completed``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from types import TracebackType

from pipeline.transcript import Segment

log = logging.getLogger(__name__)



class SegmentPublisher:
    def __init__(self, publish: Callable[[Segment], None], name: str = "segments") -> None:
        self._publish = publish
        self._queue: queue.SimpleQueue[Segment | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> SegmentPublisher:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._queue.put(None)  # the end
        self._thread.join()
        # An error already on its way out wins: it is why decoding stopped.
        if exc is None and self._error is not None:
            raise self._error

    def submit(self, segment: Segment) -> None:
        """The engine's callback: queue ``segment``; raise what publishing an earlier one raised."""
        if self._error is not None:
            raise self._error
        self._queue.put(segment)

    def _run(self) -> None:
        while (segment := self._queue.get()) is not None:
            if self._error is not None:
                continue  # decoding stops at its next segment; drain until closed
            try:
                self._publish(segment)
            except BaseException as exc:  # noqa: BLE001 - handed to the decode loop's thread
                self._error = exc
