"""api/recording.py: a live session's audio written as Sun AU while it arrives, and a silent session
leaving nothing behind (a recording made a job is in tests/integration/test_recording.py)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, cast

import numpy as np

from api.recording import AU_HEADER, Recording
from api.state import ApiState
from pipeline.live import SAMPLE_RATE, LiveConfig
from pipeline.media import decode_audio
from pipeline.settings import Settings
from pipeline.storage.local import LocalStorage


def state_in(tmp_path: Path) -> ApiState:
    none = cast(Any, None)
    return ApiState(settings=Settings(upload_dir=tmp_path / "store", scratch_dir=tmp_path / "scratch"), redis=none,
                    jobs=none, cache=none, broker=none, hub=none, limits=none, storage=LocalStorage(tmp_path / "store"))


def test_the_header_says_16_bit_mono_at_the_live_rate_of_unknown_length() -> None:
    magic, offset, size, encoding, rate, channels = struct.unpack(">4sIIIII", AU_HEADER)
    assert (magic, offset, size, encoding, rate, channels) == (b".snd", 24, 0xFFFFFFFF, 3, SAMPLE_RATE, 1)
    assert len(AU_HEADER) == offset


def test_samples_arrive_little_endian_and_are_stored_big_endian_as_au_wants(tmp_path: Path) -> None:
    recording = Recording(state_in(tmp_path), "owner", "sess_1")
    first, second = np.array([0, 1, -1, 32767], dtype="<i2"), np.array([-32768, 256], dtype="<i2")
    recording.write(first.tobytes())
    recording.write(second.tobytes())
    assert recording.samples == 6
    recording.sink.close()
    stored = tmp_path / "store" / recording.sink.key
    assert stored.read_bytes() == AU_HEADER + np.array([0, 1, -1, 32767, -32768, 256], dtype=">i2").tobytes()
    # The extract stage reads it as FFmpeg does, length unknown and all.
    pcm = decode_audio(stored)
    assert np.round(pcm * 32768).astype(int).tolist() == [0, 1, -1, 32767, -32768, 256]


def test_a_session_in_which_nothing_was_said_makes_no_job_and_leaves_no_file(tmp_path: Path) -> None:
    recording = Recording(state_in(tmp_path), "owner", "sess_2")
    assert recording.finish(LiveConfig()) is None
    assert not any(p.is_file() for p in (tmp_path / "store").rglob("*"))
    assert not any(p.is_file() for p in (tmp_path / "scratch").rglob("*"))


def test_each_recording_is_a_job_of_its_own(tmp_path: Path) -> None:
    st = state_in(tmp_path)
    first, second = Recording(st, "owner", "sess_3"), Recording(st, "owner", "sess_3")
    assert first.task_id != second.task_id and first.sink.key != second.sink.key
