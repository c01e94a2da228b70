"""pipeline/worker/split.py: when a recording is cut across idle transcribers, and into how many pieces."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest

from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.settings import Settings
from pipeline.worker.chunks import plan_chunks
from pipeline.worker.split import (
    chunk_seconds,
    idle_transcribers,
)
from tests.support.helpers import SHARED_AUDIO

DEFAULTS = Settings()


def worker(queues: list[str], threads: int = 1, busy: int | None = 0) -> dict[str, Any]:
    record: dict[str, Any] = {"queues": queues, "threads": threads}
    if busy is not None:
        record["busy"] = busy
    return record


def test_idle_counts_free_threads_of_transcribe_workers_only() -> None:
    workers = [worker(["transcribe"]), worker(["transcribe"], busy=1), worker(["transcribe"], threads=4, busy=1),
               worker(["extract", "notify"], threads=4)]
    assert idle_transcribers(workers) == 1 + 0 + 3
    assert idle_transcribers([]) == 0


def test_a_worker_without_the_busy_figure_counts_as_busy() -> None:
    assert idle_transcribers([worker(["transcribe"], busy=None), worker(["transcribe"], threads=2)]) == 2


@pytest.mark.parametrize(("duration", "idle", "expected"), [
    (30.0, 4, None),  # under SPLIT_MIN_SECONDS (45 s)
    (45.0, 4, None),
    (60.0, 0, None),
    (60.0, 1, None),  # one idle transcriber takes the whole recording
    (60.0, 2, 30.0),
    (60.0, 3, 20.0),
    (60.0, 8, 20.0),  # bounded by SPLIT_MIN_CHUNK_SECONDS: 3 pieces, not 8
    (50.0, 8, 25.0),
    (300.0, 2, 150.0),
    (300.0, 16, 20.0),
    (700.0, 0, 300.0),  # over LONG_AUDIO_SECONDS: CHUNK_SECONDS pieces anyway
    (700.0, 2, 300.0),  # more idle pieces than that would not be smaller
    (700.0, 8, 87.5),  # idle capacity makes the pieces of a long recording smaller
    (1800.0, 200, 20.0),
])
def test_chunk_seconds(duration: float, idle: int, expected: float | None) -> None:
    assert chunk_seconds(duration, idle, DEFAULTS) == expected


def test_settings_switch_splitting_off() -> None:
    assert chunk_seconds(60.0, 4, replace(DEFAULTS, split_min_seconds=0)) is None
    assert chunk_seconds(700.0, 0, replace(DEFAULTS, long_audio_seconds=0)) is None
    assert chunk_seconds(700.0, 4, replace(DEFAULTS, long_audio_seconds=0)) == 175.0
    assert chunk_seconds(60.0, 4, replace(DEFAULTS, split_min_chunk_seconds=30)) == 30.0


def test_settings_parse_the_split_settings() -> None:
    parsed = Settings.from_env({"SPLIT_MIN_SECONDS": "90", "SPLIT_MIN_CHUNK_SECONDS": "25"})
    assert (parsed.split_min_seconds, parsed.split_min_chunk_seconds) == (90, 25)
    assert (DEFAULTS.split_min_seconds, DEFAULTS.split_min_chunk_seconds) == (45, 20)


@pytest.mark.skipif(not (SHARED_AUDIO / "multilingual.mp3").is_file(), reason="../shared/audio is absent")
def test_the_decision_feeds_plan_chunks_with_cuts_in_pauses() -> None:
    audio = decode_audio(SHARED_AUDIO / "multilingual.mp3")
    duration = len(audio) / SAMPLE_RATE
    # 59.9 s: two pieces however many are idle, since three would be under 20 s each.
    for idle, pieces in ((2, 2), (3, 2)):
        target = chunk_seconds(duration, idle, DEFAULTS)
        assert target is not None
        plan = plan_chunks(audio, target)
        assert len(plan) == pieces
        assert plan[0][0] == 0 and plan[-1][1] == len(audio)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
        # Cut in a pause: the audio around each cut is far quieter than the recording.
        loudness = float(abs(audio).mean())
        for _, cut in plan[:-1]:
            assert float(abs(audio[cut - 800:cut + 800]).mean()) < loudness / 2
