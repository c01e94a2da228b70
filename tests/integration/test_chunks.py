"""Long recordings split at pauses, transcribed chunk by chunk, merged in order."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.jobs import new_task_id
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript
from pipeline.uploads import upload_path
from pipeline.worker import stages
from pipeline.worker.chunks import merge, plan_chunks
from pipeline.worker.context import Context
from pipeline.worker.stages import Next
from tests.support.helpers import SPEECH_EN_TEXT, long_speech, wer


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return long_speech(tmp_path_factory.mktemp("long") / "long.wav", 25)  # about 160 s


def test_plan_cuts_in_pauses_and_covers_everything(long_file: Path) -> None:
    audio = decode_audio(long_file)
    plan = plan_chunks(audio, 45)
    assert len(plan) >= 3
    assert plan[0][0] == 0 and plan[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
    for _, cut in plan[:-1]:
        around = np.abs(audio[cut - 400 : cut + 400])  # 25 ms either side of the cut
        assert around.max() < 0.05, f"cut at {cut / SAMPLE_RATE:.2f} s is not in a pause"
    assert plan_chunks(audio[: 50 * SAMPLE_RATE], 45) == [(0, 50 * SAMPLE_RATE)]


def test_a_cut_lands_in_a_long_silence_that_starts_before_the_search(long_file: Path) -> None:
    """Only the 15 s either side of a target are searched; a silence that began earlier and runs
    into that stretch is still a pause to cut in, and silence alone there is cut in the middle."""
    speech = decode_audio(long_file)[: 40 * SAMPLE_RATE]
    audio = np.concatenate([speech, np.zeros(40 * SAMPLE_RATE, np.float32), speech]).astype(np.float32)
    plan = plan_chunks(audio, 65)  # the target, 65 s, falls in the silence from 40 s to 80 s
    assert len(plan) == 2
    assert 40 * SAMPLE_RATE < plan[0][1] < 80 * SAMPLE_RATE


def test_merge_orders_shifts_and_renumbers() -> None:
    def part(text: str, language: str = "en") -> Transcript:
        return Transcript(text=text, language=language, duration=10.0, segments=(
            Segment(id=0, start=0.5, end=4.0, text=f" {text} one"),
            Segment(id=1, start=4.0, end=9.5, text=f" {text} two")))

    merged = merge([(160_000, part("second")), (0, part("first")), (320_000, part("third", "de"))], 30.0)
    assert [s.id for s in merged.segments] == list(range(6))
    assert [s.start for s in merged.segments] == [0.5, 4.0, 10.5, 14.0, 20.5, 24.0]
    assert merged.text == "first second third" and merged.duration == 30.0
    assert merged.language == "en"


def test_long_job_in_chunks_matches_the_unsplit_transcript(ctx: Context, long_file: Path) -> None:
    chunked = dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, long_audio_seconds=60, chunk_seconds=45))
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
    reference = " ".join([SPEECH_EN_TEXT] * 25)
    # The claim is that chunking costs at most 2 points of WER; a chunked result that comes out
    # better than the whole-file one is no failure.
    chunked_wer, whole_wer = wer(reference, merged.text), wer(reference, whole.text)
    assert chunked_wer <= whole_wer + 0.02, (chunked_wer, whole_wer)
    # A chunk delivered again after the merge changes nothing.
    assert stages.transcribe_chunk(chunked, task_id, 0) is None
    assert chunked.jobs.result(task_id) == merged


def test_merge_channels_labels_each_channel_and_orders_by_time() -> None:
    from pipeline.transcript import Redaction, Word
    from pipeline.worker.chunks import merge_channels

    left = Transcript(text=" left one", language="en", duration=5.0, segments=(
        Segment(id=0, start=0.0, end=2.0, text=" left one", words=(Word(0.0, 2.0, " left", 0.9),)),),
        redactions=(Redaction(0.5, 1.0, "number"),))
    right = Transcript(text=" right one", language="en", duration=5.0, segments=(
        Segment(id=0, start=1.0, end=3.0, text=" right one"),))
    later = Transcript(text=" left two", language="en", duration=5.0, segments=(
        Segment(id=0, start=0.5, end=1.0, text=" left two"),))
    merged = merge_channels([(2, 0, right), (1, 0, left), (1, 5 * SAMPLE_RATE, later)], 10.0)
    assert merged.channels == (1, 2)
    assert [(s.id, s.channel, s.start, s.text) for s in merged.segments] == [
        (0, 1, 0.0, " left one"), (1, 2, 1.0, " right one"), (2, 1, 5.5, " left two")]
    assert merged.segments[0].words is not None and merged.segments[0].words[0].channel == 1
    assert merged.text == "left one right one left two"
    assert merged.redactions == (Redaction(0.5, 1.0, "number"),)
