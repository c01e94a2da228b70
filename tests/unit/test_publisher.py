"""pipeline/worker/publisher.py: segments published off the decode loop, in order, errors handed back."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.errors import JobCancelled
from pipeline.transcript import Segment
from pipeline.worker.publisher import SegmentPublisher


def segment(index: int) -> Segment:
    return Segment(id=index, start=float(index), end=index + 1.0, text=f" word {index}", tokens=(),
                   temperature=0.0, avg_logprob=0.0, compression_ratio=1.0, no_speech_prob=0.0)


def test_a_slow_publish_does_not_hold_the_decode_loop_and_every_segment_is_out_at_close() -> None:
    published: list[tuple[int, str]] = []

    def publish(seg: Segment) -> None:
        time.sleep(0.05)  # a Redis round trip on a busy machine, exaggerated
        published.append((seg.id, threading.current_thread().name))

    started = time.perf_counter()
    with SegmentPublisher(publish, name="test-segments") as publisher:
        for index in range(10):
            publisher.submit(segment(index))
        handed_over = time.perf_counter() - started
    assert handed_over < 0.25, f"submitting 10 segments took {handed_over:.2f} s: publishing is inline"
    assert [i for i, _ in published] == list(range(10))
    assert {name for _, name in published} == {"test-segments"}


def test_what_publishing_raises_stops_decoding_at_a_later_segment_and_at_close() -> None:
    def publish(seg: Segment) -> None:
        if seg.id == 2:
            raise JobCancelled("The job was cancelled.")

    submitted = []
    with pytest.raises(JobCancelled), SegmentPublisher(publish) as publisher:
        for index in range(500):  # an engine decoding a segment every 10 ms
            publisher.submit(segment(index))
            submitted.append(index)
            time.sleep(0.01)
    assert submitted[:3] == [0, 1, 2] and len(submitted) < 500, "decoding went on after the error"


def test_an_error_already_raised_by_the_engine_wins_over_the_publishers() -> None:
    def publish(seg: Segment) -> None:
        raise RuntimeError("redis down")

    with pytest.raises(ValueError, match="engine"), SegmentPublisher(publish) as publisher:
        publisher.submit(segment(0))
        raise ValueError("engine failed")
