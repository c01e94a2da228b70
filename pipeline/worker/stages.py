"""The pipeline's stages as plain functions. Actors call these; tests call them directly.

Each stage is idempotent under at-least-once delivery: it reads the job first and does
nothing for a job that is final or already past the stage, and a job caught half-way by a
dead worker is redone from the start of the stage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from enum import Enum
from pathlib import Path
from typing import Any, cast

import numpy as np
import requests

from pipeline import outbox
from pipeline.cache import cache_digest
from pipeline.errors import (
    DiarizationError,
    JobCancelled,
    MediaDecodeError,
    PipelineError,
    TranscriptionError,
)
from pipeline.jobs import DIARIZE_PART, PARTS, TRANSCRIBE_PART, Job, Moved, State
from pipeline.keys import diarize_turns_key
from pipeline.media import SAMPLE_RATE, copy_samples, decode_channels_to_files, decode_to_file, open_npy
from pipeline.metrics import count_audio_seconds
from pipeline.options import MAX_CHANNELS, TranscribeOptions
from pipeline.redaction import redact_audio, to_wav
from pipeline.speakers import apply_speakers
from pipeline.storage import audio_key, chunk_key, speaker_key, upload_key
from pipeline.transcript import Segment, Transcript, Turn
from pipeline.uploads import remove_job_files
from pipeline.worker import chunks, postprocess, split
from pipeline.worker.chunks import plan_chunks
from pipeline.worker.context import Context
from pipeline.worker.engines import choose_device
from pipeline.worker.gpu import is_out_of_memory, release_memory
from pipeline.worker.publisher import SegmentPublisher

log = logging.getLogger(__name__)


CHUNK_ID_STRIDE = 1_000_000  # live segment ids: chunk index * stride + id within the chunk


class Next(Enum):
    TRANSCRIBE = "transcribe"
    CHUNKS = "chunks"  # a long recording: one transcribe message per chunk, in parallel
    NOTIFY = "notify"


def extract(ctx: Context, task_id: str) -> Next | None:
    """Decode the upload to 16 kHz mono float32, look up the cache, and store what the
    transcribers read: the whole audio, or a long recording's chunks.

    Memory stays flat whatever the length: the upload is fetched into this host's scratch
    folder, decoded into a ``.npy`` file as it goes, the chunks planned and cut from that file
    window by window, and each result put into storage; the scratch copies go at the end.
    """
    job = ctx.jobs.get(task_id)
    if ctx.jobs.transition(task_id, State.EXTRACTING) is Moved.REFUSED:
        log.info("job %s is %s; extract skipped", task_id, job.status)
        return None
    with _scratch(ctx, task_id) as scratch:
        decoded = scratch / "audio.npy"
        with ctx.storage.scratch_copy(upload_key(task_id), scratch) as upload:
            samples = decode_to_file(upload, decoded, max_duration=ctx.settings.max_duration_seconds)
            channel_files = _decode_channels(ctx, job, upload, scratch)
        _stop_if_cancelled(ctx, task_id)
        duration = round(samples / SAMPLE_RATE, 3)
        ctx.jobs.set_fields(task_id, duration=duration, stage="cache-lookup")
        cached = ctx.cache.get(job.cache_input, job.options)
        if cached is not None:
            if job.options.redact_pii_audio:
                _keep_redacted_audio(ctx, job, cached, np.load(decoded, mmap_mode="r"))
            return _complete(ctx, job, cached, cached_hit=True)
        if channel_files:
            return _plan_channels(ctx, job, decoded, channel_files, duration)
        plan = [(0, samples)]
        idle = split.take_idle_transcribers(ctx.redis, task_id, duration, ctx.settings)
        target = split.chunk_seconds(duration, idle, ctx.settings)
        if target is not None:
            plan = plan_chunks(decoded, target)
        if len(plan) > 1:
            log.info("job %s: %.0f s of audio in %d chunks", task_id, duration, len(plan))
            stored = open_npy(decoded)
            for index, (start, end) in enumerate(plan):
                part = scratch / f"chunk{index}.npy"
                copy_samples(stored, start, end, part)
                ctx.storage.move_file(chunk_key(task_id, index), part)
            if job.options.diarize or job.options.redact_pii_audio:  # these read the whole recording
                ctx.storage.move_file(audio_key(task_id), decoded)
            ctx.jobs.set_fields(task_id, chunks=json.dumps(plan), stage="waiting-for-transcriber")
            return Next.CHUNKS
        ctx.storage.move_file(audio_key(task_id), decoded)
    ctx.jobs.set_fields(task_id, audio_path=f"{ctx.storage.url}/{audio_key(task_id)}",
                        stage="waiting-for-transcriber")
    return Next.TRANSCRIBE


def _decode_channels(ctx: Context, job: Job, upload: Path, scratch: Path) -> list[Path]:
    """multichannel: each channel decoded into a file of its own (one for mono input)."""
    if not job.options.multichannel:
        return []
    from pipeline.media import channel_count

    files = [scratch / f"channel{n + 1}.npy" for n in range(min(channel_count(upload), MAX_CHANNELS))]
    decode_channels_to_files(upload, files, max_duration=ctx.settings.max_duration_seconds)
    return files


def _plan_channels(ctx: Context, job: Job, decoded: Path, files: list[Path], duration: float) -> Next:
    """A multichannel job is planned as chunks: each channel's (cut like any recording when long
    or when transcribers are idle), so the chunk machinery transcribes them in parallel."""
    task_id = job.task_id
    idle = split.take_idle_transcribers(ctx.redis, task_id, duration, ctx.settings)
    target = split.chunk_seconds(duration, max(0, idle - len(files) + 1), ctx.settings)
    plan: list[tuple[int, int]] = []
    channels: list[int] = []
    for number, path in enumerate(files, start=1):
        stored = open_npy(path)
        ranges = plan_chunks(path, target) if target is not None else [(0, stored.length)]
        for start, end in ranges:
            index = len(plan)
            part = path.with_name(f"chunk{index}.npy")
            copy_samples(stored, start, end, part)
            ctx.storage.move_file(chunk_key(task_id, index), part)
            plan.append((start, end))
            channels.append(number)
    if job.options.redact_pii_audio:
        ctx.storage.move_file(audio_key(task_id), decoded)
    log.info("job %s: %d channels in %d chunks", task_id, len(files), len(plan))
    ctx.jobs.set_fields(task_id, chunks=json.dumps(plan), chunk_channels=json.dumps(channels),
                        stage="waiting-for-transcriber")
    return Next.CHUNKS


def _keep_redacted_audio(ctx: Context, job: Job, transcript: Transcript, audio: np.ndarray | None = None) -> None:
    """redact_pii_audio: the decoded audio with a tone over each redacted span, kept as WAV
    beside the result; read from the store when not given."""
    if not job.options.redact_pii_audio:
        return
    if audio is None:
        with _stored_audio(ctx, audio_key(job.task_id)) as stored:
            wav = to_wav(redact_audio(stored, transcript.redactions, SAMPLE_RATE), SAMPLE_RATE)
    else:
        wav = to_wav(redact_audio(audio, transcript.redactions, SAMPLE_RATE), SAMPLE_RATE)
    ctx.jobs.save_redacted_audio(job.task_id, wav)


@contextlib.contextmanager
def _scratch(ctx: Context, task_id: str) -> Iterator[Path]:
    """A folder of this stage's own in SCRATCH_DIR, removed with everything in it afterwards
    (a redelivered message, or another chunk of the job, never shares it)."""
    folder = ctx.settings.scratch_dir / f"{task_id}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _stored_audio(ctx: Context, key: str) -> Iterator[np.ndarray]:
    """The decoded audio under ``key``, in a local file (a scratch copy where the store is a
    bucket) mapped rather than read, for the duration of the block."""
    with _scratch(ctx, key.split("/")[1]) as scratch, ctx.storage.scratch_copy(key, scratch) as path:
        try:
            audio: np.ndarray = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise MediaDecodeError("The decoded audio for this job cannot be read; upload the file "
                                   "again.") from exc
        yield audio


def transcribe(ctx: Context, task_id: str) -> Next | None:
    job = ctx.jobs.get(task_id)
    split.release_slot(ctx.redis, task_id)
    choice = choose_device(ctx.settings)
    if _start_transcribing(ctx, job, device=choice.device, device_reason=choice.reason) is Moved.REFUSED:
        log.info("job %s is %s; transcribe skipped", task_id, job.status)
        return None
    if job.options.diarize and TRANSCRIBE_PART in ctx.jobs.parts(task_id):
        return _merge_parts(ctx, job)  # stored by an earlier delivery; only the merge may be left
    # A twin upload may have finished while this one waited in the queue.
    cached = ctx.cache.get(job.cache_input, job.options)
    if cached is None and not ctx.cache.claim(job.cache_input, job.options, task_id):
        cached = _wait_for_twin(ctx, job)
    if cached is not None:
        _keep_redacted_audio(ctx, job, cached)
        return _complete(ctx, job, cached, cached_hit=True)
    try:
        transcript = postprocess.finish(_run_engine(ctx, job, choice.device), job.options)
        if not job.options.diarize:  # a diarized job's cache entry is the merged result
            transcript = postprocess.as_asked(transcript, job.options)
            _keep_redacted_audio(ctx, job, transcript)
            ctx.cache.put(job.cache_input, job.options, transcript)
        count_audio_seconds(ctx.redis, transcript.duration)
    except BaseException:
        release_memory()
        raise
    finally:
        ctx.cache.release(job.cache_input, job.options, task_id)
    try:
        if job.options.diarize:
            return _save_part(ctx, job, TRANSCRIBE_PART, {"transcript": transcript.to_dict()})
        return _complete(ctx, job, transcript, cached_hit=False)
    finally:
        release_memory()  # once the result is out: the client does not wait for a collection


def transcribe_chunk(ctx: Context, task_id: str, index: int) -> Next | None:
    """Transcribe chunk ``index`` of a long recording; the worker that stores the last chunk
    merges them and completes the job. A chunk redelivered after it was stored only checks
    whether the job can be completed, so a merge interrupted by a dead worker still happens."""
    job = ctx.jobs.get(task_id)
    split.release_slot(ctx.redis, task_id, index + 1)
    choice = choose_device(ctx.settings)
    if _start_transcribing(ctx, job, device=choice.device, device_reason=choice.reason) is Moved.REFUSED:
        log.info("job %s is %s; chunk %d skipped", task_id, job.status, index)
        return None
    if not 0 <= index < len(job.chunks):
        raise TranscriptionError(f"Chunk {index} does not exist; the job has {len(job.chunks)}.")
    start = job.chunks[index][0]
    stored = len(ctx.jobs.chunks(task_id))
    if ctx.jobs.chunk(task_id, index) is None:
        # Every channel's chunks: the audio to decode is the recording times its channels.
        duration = max(sum(b - a for a, b in job.chunks) / SAMPLE_RATE, 1e-6)
        offset = start / SAMPLE_RATE
        last_end = [0.0]
        channel = job.chunk_channels[index] if job.chunk_channels else None

        def on_segment(segment: Segment) -> None:
            _stop_if_cancelled(ctx, task_id)
            # Live segments carry ids unique across chunks; the merged result renumbers them.
            segment = replace(postprocess.finish_segment(segment, job.options), channel=channel)
            shown = chunks.shift(Transcript(text="", language="", duration=0.0, segments=(segment,)),
                                 offset, index * CHUNK_ID_STRIDE + segment.id)[0]
            decoded = ctx.jobs.add_decoded(task_id, max(0.0, segment.end - last_end[0]))
            last_end[0] = segment.end
            ctx.jobs.add_segment(task_id, shown, min(0.99, decoded / duration),
                                 part=_progress_part(job), parts=PARTS)

        key = ctx.models.key_for(job.options, choice.device)
        with _stored_audio(ctx, chunk_key(task_id, index)) as part, SegmentPublisher(on_segment) as publisher:
            transcript = ctx.models.get(key).transcribe(np.asarray(part), engine_options(job.options),
                                                        publisher.submit)
        stored = ctx.jobs.save_chunk(task_id, index, postprocess.finish(transcript, job.options))
        release_memory()
        log.info("job %s: chunk %d of %d transcribed", task_id, index, len(job.chunks))
    if stored < len(job.chunks):
        return None
    parts = ctx.jobs.chunks(task_id)
    if job.chunk_channels:
        merged = chunks.merge_channels([(job.chunk_channels[i], job.chunks[i][0], t) for i, t in parts.items()],
                                       duration=max(b for _, b in job.chunks) / SAMPLE_RATE)
    else:
        merged = chunks.merge([(job.chunks[i][0], t) for i, t in parts.items()],
                              duration=job.chunks[-1][1] / SAMPLE_RATE)
    if job.options.diarize:  # the chunks' merge first, then the speakers' (once both parts are in)
        return _save_part(ctx, job, TRANSCRIBE_PART, {"transcript": merged.to_dict()})
    merged = postprocess.as_asked(merged, job.options)
    if ctx.jobs.get(task_id).status is State.TRANSCRIBING:
        _keep_redacted_audio(ctx, job, merged)
    if ctx.jobs.complete(task_id, merged, cached=False) is not Moved.MOVED:
        return None
    ctx.cache.put(job.cache_input, job.options, merged)
    count_audio_seconds(ctx.redis, merged.duration)
    remove_job_files(ctx.storage, task_id)
    return Next.NOTIFY


def _wait_for_twin(ctx: Context, job: Job) -> Transcript | None:
    """Another job is transcribing the same input: wait for its result rather than redo it.

    Returns its transcript, or None once this job holds the claim itself (the twin failed,
    or died and its claim expired).
    """
    log.info("job %s waits for a twin transcribing the same input", job.task_id)
    while True:
        _stop_if_cancelled(ctx, job.task_id)
        found = ctx.cache.peek(job.cache_input, job.options)
        if found is not None:
            return found
        if ctx.cache.claim(job.cache_input, job.options, job.task_id):
            return None
        time.sleep(0.25)


def _run_engine(ctx: Context, job: Job, device: str) -> Transcript:
    with _stored_audio(ctx, audio_key(job.task_id)) as audio:
        return _transcribe_whole(ctx, job, device, audio)


def _transcribe_whole(ctx: Context, job: Job, device: str, audio: np.ndarray) -> Transcript:
    task_id = job.task_id
    duration = max(len(audio) / SAMPLE_RATE, 1e-6)

    def on_segment(segment: Segment) -> None:
        # Checked once per decoded segment, off the decode loop (pipeline.worker.publisher): a cancelled
        # job stops within two segments.
        _stop_if_cancelled(ctx, task_id)
        segment = postprocess.finish_segment(segment, job.options)
        ctx.jobs.add_segment(task_id, segment, min(0.99, segment.end / duration),
                             part=_progress_part(job), parts=PARTS)
        # Only while this job still holds it: a claim that lapsed is its successor's now.
        ctx.cache.renew(job.cache_input, job.options, owner=task_id)

    key = ctx.models.key_for(job.options, device)
    ctx.jobs.reset_segments(task_id)
    try:
        with SegmentPublisher(on_segment) as publisher:
            return ctx.models.get(key).transcribe(np.asarray(audio), engine_options(job.options),
                                                  publisher.submit)
    except Exception as exc:
        if device == "cpu" or not is_out_of_memory(exc):
            raise
    # Out of GPU memory: free what this process holds and finish the job on the CPU.
    log.warning("job %s ran out of GPU memory; retrying on the CPU", task_id)
    ctx.models.drop(key)
    ctx.jobs.set_fields(task_id, device="cpu", device_reason="CUDA out of memory; retried on the CPU")
    ctx.jobs.reset_segments(task_id)
    cpu_key = ctx.models.key_for(job.options, "cpu")
    with SegmentPublisher(on_segment) as publisher:
        return ctx.models.get(cpu_key).transcribe(np.asarray(audio), engine_options(job.options), publisher.submit)


def engine_options(options: TranscribeOptions) -> TranscribeOptions:
    """What the engine is asked for: a diarized job needs each word's time to give it a speaker,
    a redacted one to time what it redacts."""
    if options.diarize or postprocess.needs_words(options):
        return replace(options, word_timestamps=True)
    return options


# -- speakers: a part of the job that runs beside the transcription -----------------------------
def _start_transcribing(ctx: Context, job: Job, *, device: str | None = None,
                        device_reason: str | None = None) -> Moved:
    """Move the job to ``transcribing``, where its transcription and its diarization both run.
    ``device``: the transcription's (the job's device is the one its transcript came from)."""
    fields: dict[str, Any] = {"device": device, "device_reason": device_reason} if device is not None else {}
    if not job.options.diarize:
        return ctx.jobs.transition(job.task_id, State.TRANSCRIBING, **fields)
    moved = ctx.jobs.transition(job.task_id, State.TRANSCRIBING, stage="+".join(PARTS), **fields)
    if moved is Moved.ALREADY and fields:
        # The diarize stage moved it first; the device is still the transcription's to say.
        ctx.jobs.set_fields(job.task_id, **fields)
    return moved


def _progress_part(job: Job) -> str:
    """The part whose progress a transcription reports: none for a job it is all of."""
    return TRANSCRIBE_PART if job.options.diarize else ""


# Turns found for one input and one set of speaker options, kept briefly so that a twin upload
# (the same bytes and options, at the same time) takes them instead of diarizing again.
TWIN_TURNS_SECONDS = 600


def speaker_options(options: TranscribeOptions) -> TranscribeOptions:
    """The options that change who speaks when: the key under which twins share their turns."""
    return TranscribeOptions(engine="", model="", diarize=True, min_speakers=options.min_speakers,
                             max_speakers=options.max_speakers, known_speaker_names=options.known_speaker_names,
                             known_speaker_digests=options.known_speaker_digests)


def _twin_turns_key(job: Job) -> str:
    return diarize_turns_key(cache_digest(job.sha256, speaker_options(job.options)))


def diarize(ctx: Context, task_id: str) -> Next | None:
    """Find who spoke when over the job's whole audio, beside its transcription; whichever of
    the two stores its part last merges them and completes the job. Twin uploads diarize once:
    the first claims the work, the others wait for its turns (as transcription does)."""
    job = ctx.jobs.get(task_id)
    if _start_transcribing(ctx, job) is Moved.REFUSED:
        log.info("job %s is %s; diarize skipped", task_id, job.status)
        return None
    if DIARIZE_PART in ctx.jobs.parts(task_id):
        return _merge_parts(ctx, job)  # stored by an earlier delivery; only the merge may be left
    shared = speaker_options(job.options)
    turns = _twin_turns(ctx, job) if job.sha256 else None
    if turns is None and job.sha256 and not ctx.cache.claim(job.sha256, shared, task_id):
        log.info("job %s waits for a twin diarizing the same input", task_id)
        while turns is None:
            _stop_if_cancelled(ctx, task_id)
            if ctx.jobs.get(task_id).status != State.TRANSCRIBING:
                return None  # completed meanwhile (from the twin's cached result) or failed
            turns = _twin_turns(ctx, job)
            if turns is None and ctx.cache.claim(job.sha256, shared, task_id):
                break  # the twin failed or died: the work is this job's now
            if turns is None:
                time.sleep(0.25)
    if turns is None:
        try:
            turns = _find_turns(ctx, job)
            if job.sha256:
                ctx.redis.set(_twin_turns_key(job), json.dumps([asdict(t) for t in turns]), ex=TWIN_TURNS_SECONDS)
        finally:
            if job.sha256:
                ctx.cache.release(job.sha256, shared, task_id)
    else:
        log.info("job %s: speakers taken from a twin upload", task_id)
    ctx.jobs.set_progress(task_id, 1.0, part=DIARIZE_PART, parts=PARTS)
    log.info("job %s: %d speakers in %d turns", task_id, len({t.speaker for t in turns}), len(turns))
    return _save_part(ctx, job, DIARIZE_PART, {"turns": [asdict(t) for t in turns]})


def _twin_turns(ctx: Context, job: Job) -> list[Turn] | None:
    raw = cast(str | None, ctx.redis.get(_twin_turns_key(job)))
    return None if raw is None else [Turn(**t) for t in json.loads(raw)]


def _find_turns(ctx: Context, job: Job) -> list[Turn]:
    task_id = job.task_id
    # torch, in the processes that diarize; its threads set per job, where the settings are.
    from pipeline.worker.diarization import diarize as find_turns
    from pipeline.worker.diarization import use_cpu_threads

    use_cpu_threads(ctx.settings.diarize_threads)
    shared = speaker_options(job.options)

    def on_progress(fraction: float) -> None:
        _stop_if_cancelled(ctx, task_id)
        if job.sha256:
            ctx.cache.renew(job.sha256, shared, owner=task_id)
        if not ctx.jobs.set_progress(task_id, min(0.99, fraction), part=DIARIZE_PART, parts=PARTS):
            # No longer transcribing: failed, or completed from a twin's cached result.
            raise JobCancelled("The job ended while its speakers were being found.")

    device = choose_device(ctx.settings).device
    low, high = job.options.min_speakers, job.options.max_speakers
    try:
        with _stored_audio(ctx, audio_key(task_id)) as audio:
            try:
                turns = find_turns(np.asarray(audio), device=device, progress=on_progress,
                                   min_speakers=low, max_speakers=high)
            except DiarizationError as exc:
                if device == "cpu" or not (is_out_of_memory(exc) or is_out_of_memory(exc.__cause__ or exc)):
                    raise
                log.warning("job %s ran out of GPU memory diarizing; retrying on the CPU", task_id)
                release_memory()
                turns = find_turns(np.asarray(audio), device="cpu", progress=on_progress,
                                   min_speakers=low, max_speakers=high)
                device = "cpu"
            if job.options.known_speaker_names:
                turns = _name_known_speakers(ctx, job, np.asarray(audio), turns, device)
    finally:
        release_memory()
    return turns


def _name_known_speakers(ctx: Context, job: Job, audio: np.ndarray, turns: list[Turn], device: str) -> list[Turn]:
    """Speakers that sound like a reference clip take its name (pipeline.worker.diarization.known)."""
    from pipeline.worker.diarization.known import Reference, name_speakers, reference_embedding

    references = []
    for index, name in enumerate(job.options.known_speaker_names):
        with _stored_audio(ctx, speaker_key(job.task_id, index)) as clip:
            embedding = reference_embedding(np.asarray(clip), field=f"known_speaker_references[{index}]",
                                            device=device)
        references.append(Reference(name, embedding))
    named = name_speakers(audio, turns, references, device=device)
    log.info("job %s: %d of %d known speakers matched", job.task_id,
             len({t.speaker for t in named} - {t.speaker for t in turns}), len(references))
    return named


def diarize_failed(ctx: Context, task_id: str, error: PipelineError) -> Next | None:
    """The diarize stage gave up: the job fails, or with DIARIZE_FAILURE=ignore it completes
    without speakers and says so in its ``warnings``."""
    if isinstance(error, TranscriptionError):  # the actor's wording for "failed after retries"
        error = DiarizationError(f"Finding the speakers failed: {error.message}")
    if ctx.settings.diarize_failure != "ignore":
        return fail(ctx, task_id, error)
    log.warning("job %s: diarization failed (%s); completing it without speakers", task_id, error.message)
    warning = f"Speakers were not found, so the transcript has none: {error.message}"
    return _save_part(ctx, ctx.jobs.get(task_id), DIARIZE_PART, {"turns": None, "warning": warning})


def _save_part(ctx: Context, job: Job, part: str, result: dict[str, object]) -> Next | None:
    # When each part ended, for whoever asks how long the two ran side by side (the bench).
    if ctx.jobs.save_part(job.task_id, part, {**result, "stored_at": time.time()}, PARTS) > 0:
        return None  # the other part is still running: it merges when it ends
    return _merge_parts(ctx, job)


def _merge_parts(ctx: Context, job: Job) -> Next | None:
    """Transcript + turns -> the diarized result, completing the job; a no-op until both parts
    are stored, and at most once (the completing transition is atomic)."""
    parts = ctx.jobs.parts(job.task_id)
    if any(name not in parts for name in PARTS):
        return None
    transcript = Transcript.from_dict(parts[TRANSCRIBE_PART]["transcript"])
    speakers = parts[DIARIZE_PART]
    warning = speakers.get("warning")
    if speakers.get("turns") is not None:
        transcript = apply_speakers(transcript, [Turn(**t) for t in speakers["turns"]])
    if not job.options.word_timestamps:
        # Computed for the merge only: the result has what the request asked for.
        transcript = replace(transcript, segments=tuple(replace(s, words=None) for s in transcript.segments))
    extra = {"warnings": json.dumps([warning])} if warning else {}
    _keep_redacted_audio(ctx, job, transcript)
    if ctx.jobs.complete(job.task_id, transcript, cached=False, **extra) is not Moved.MOVED:
        return None
    if not warning:
        ctx.cache.put(job.cache_input, job.options, transcript)
    if job.chunks:
        count_audio_seconds(ctx.redis, transcript.duration)
    remove_job_files(ctx.storage, job.task_id)
    return Next.NOTIFY


def _stop_if_cancelled(ctx: Context, task_id: str) -> None:
    if ctx.jobs.cancel_requested(task_id):
        raise JobCancelled("The job was cancelled.")


def _complete(ctx: Context, job: Job, transcript: Transcript, *, cached_hit: bool) -> Next | None:
    moved = ctx.jobs.complete(job.task_id, transcript, cached=cached_hit)
    remove_job_files(ctx.storage, job.task_id)
    return Next.NOTIFY if moved is Moved.MOVED else None


def fail(ctx: Context, task_id: str, error: PipelineError) -> Next | None:
    """End the job as ``failed`` with a reason a person can read."""
    moved = ctx.jobs.transition(task_id, State.FAILED, error=error.to_dict())
    # Other chunks of a long recording may still be running: they stop at their next segment.
    ctx.jobs.request_stop(task_id)
    remove_job_files(ctx.storage, task_id)
    return Next.NOTIFY if moved is Moved.MOVED else None


def notify(ctx: Context, task_id: str, http: requests.Session | None = None) -> int | None:
    """Make the job's webhook attempt that is due now, if any (``pipeline.outbox``: claimed,
    so a notify message and a sweeper never deliver one event at once).

    Returns the seconds until the next attempt when this one failed in a way worth retrying
    (the outbox's sweeper makes it then), or None when there is nothing more to do now. The
    job's state never changes here: only its ``webhook_*`` fields do.
    """
    made = outbox.attempt(ctx, task_id, http=http)
    if made is None or made.next_at is None:
        return None
    return max(0, math.ceil(made.next_at - time.time()))
