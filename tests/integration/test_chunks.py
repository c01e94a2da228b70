"""Long recordings split at pauses, transcribed chunk by chunk, merged in order."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest

from pipeline.jobs import new_task_id
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.options import TranscribeOptions
from pipeline.uploads import upload_path
from pipeline.worker import stages
from pipeline.worker.context import Context
from pipeline.worker.stages import Next
from tests.support.helpers import SPEECH_EN_TEXT, long_speech, wer

# About 77 s of speech with pauses, cut into three chunks or more: the claims hold for any
# length, and each second here is decoded twice (chunked, then whole).
REPEATS = 12


def test_long_job_in_chunks_matches_the_unsplit_transcript(ctx: Context, tmp_path: Path) -> None:
    long_file = long_speech(tmp_path / "long.wav", REPEATS)
    chunked = dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, long_audio_seconds=40, chunk_seconds=25))
    task_id = new_task_id()
    target = upload_path(ctx.settings.upload_dir, task_id)
    shutil.copy(long_file, target)
    chunked.jobs.create(task_id, TranscribeOptions(), upload_path=str(target),
                        sha256=hashlib.sha256(target.read_bytes()).hexdigest())
    assert stages.extract(chunked, task_id) is Next.CHUNKS
    job = chunked.jobs.get(task_id)
    assert len(job.chunks) >= 3
    # Chunks may finish in any order; the one that stores the last merges.
    results = [stages.transcribe_chunk(chunked, task_id, i) for i in reversed(range(len(job.chunks)))]
    assert results[:-1] == [None] * (len(job.chunks) - 1) and results[-1] is Next.NOTIFY
    job = chunked.jobs.get(task_id)
    assert job.status == "completed" and job.progress == 1.0
    merged = chunked.jobs.result(task_id)
    assert merged is not None
    starts = [s.start for s in merged.segments]
    assert starts == sorted(starts) and [s.id for s in merged.segments] == list(range(len(starts)))
    assert merged.segments[-1].end == pytest.approx(merged.duration, abs=3.0)
    assert merged.duration == pytest.approx(len(decode_audio(long_file)) / SAMPLE_RATE, abs=0.01)

    whole_audio = decode_audio(long_file)
    whole = ctx.models.get(ctx.models.key_for(TranscribeOptions(), "cpu")).transcribe(
        whole_audio, TranscribeOptions(), lambda s: None)
    reference = " ".join([SPEECH_EN_TEXT] * REPEATS)
    # The claim is that chunking costs at most 2 points of WER; a chunked result that comes out
    # better than the whole-file one is no failure.
    chunked_wer, whole_wer = wer(reference, merged.text), wer(reference, whole.text)
    assert chunked_wer <= whole_wer + 0.02, (chunked_wer, whole_wer)
    # A chunk delivered again after the merge changes nothing.
    assert stages.transcribe_chunk(chunked, task_id, 0) is None
    assert chunked.jobs.result(task_id) == merged
