"""faster-whisper's batched decoder (``BatchedInferencePipeline``) beside its sequential one.

The batched pipeline cuts the recording at pauses (Silero VAD) into pieces of up to 30 s and
decodes ``batch_size`` of them at once: a GPU then works on many windows per call instead of
one. It always uses VAD (it cannot place pieces without it, so ``vad_filter`` has no say) and
never conditions a window on the previous one's text, which also keeps a misheard window from
dragging the next ones into a repetition loop.

Which one runs: the request's ``batch_size`` option, else the ``BATCH_SIZE`` setting, else
(``auto``) ``AUTO_CUDA_BATCH`` on CUDA and ``AUTO_CPU_BATCH`` on the CPU. A batch size of 1 is
the sequential decoder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.media import SAMPLE_RATE
from pipeline.options import TranscribeOptions

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.transcribe import Segment as RawSegment
    from faster_whisper.transcribe import TranscriptionInfo

AUTO_CUDA_BATCH = 16  # the batch gpu-check measured best for tiny.en and base on one GPU
# Not on the CPU: on real conversation (far-field meetings, short turns) the batched decoder's VAD
# pass and gap re-decoding cost more than batching saves with one engine thread per process, and
# it spends more CPU per audio second, so a loaded machine moves less audio (docs/benchmarks.md,
# "Sequential against batched decoding"). It won only on read English with two threads.
AUTO_CPU_BATCH = 1
# Pieces cut only at pauses of half a second, each padded by 400 ms of its surroundings. With
# faster-whisper's batched defaults (160 ms pauses, 30 ms pad) tiny.en dropped the first
# sentence of some pieces: 14.0 % WER against 2.3 % sequential on 84 s of English, 0.9 % with these.
BATCH_VAD = {"min_silence_duration_ms": 500, "speech_pad_ms": 400}
MAX_BATCH_SIZE = 64
# Silences in the batched output longer than this are decoded again (``with_gaps_filled``): above
# the 0.5 s pauses that VAD cuts at plus its 2 x 0.4 s padding, so pauses seen as such are skipped.
GAP_SECONDS = 1.0
WINDOW_SECONDS = 30  # what Whisper hears at once
# What a gap's decode must not look like to be kept (``_decode_gap``): Whisper's own marks of a
# failed window, a text that compresses too well (a loop), or its silence rule (below).
# A gap of a second at a piece's end, holding only the tail of the last word, came back as
# "Thank you very much for your time, and thank you..." (compression ratio 16.7, no-speech 0.74).
GAP_MAX_COMPRESSION_RATIO = 2.4
# Whisper's own silence rule: a window it thinks holds no speech and whose words it doubts.
GAP_NO_SPEECH_PROB = 0.6
GAP_LOW_LOGPROB = -1.0


def batch_size_for(requested: int | None, setting: int, device: str, seconds: float | None = None) -> int:
    """The batch size a transcription of ``seconds`` of audio runs with; 1 means the sequential decoder.

    ``requested`` is the request option (None: not given), ``setting`` is ``BATCH_SIZE``
    (0: auto). Auto leaves audio of one window (30 s or less) to the sequential decoder: there
    is nothing to batch, and the batched one would only add a VAD pass (and builds its prompt
    from ``initial_prompt`` a little differently: tiny.en then wrote "comfyUI" for "ComfyUI")."""
    if requested:
        return requested
    if setting:
        return setting
    if seconds is not None and seconds <= WINDOW_SECONDS:
        return 1
    return AUTO_CUDA_BATCH if device == "cuda" else AUTO_CPU_BATCH


def transcribe(
    model: WhisperModel, audio: np.ndarray, options: TranscribeOptions, batch_size: int
) -> tuple[Iterable[RawSegment], TranscriptionInfo]:
    """Start decoding ``audio`` with ``model``: sequentially for ``batch_size`` 1, else batched.

    Returns faster-whisper's lazy segment iterator and its info, whichever path ran."""
    common: dict[str, Any] = {
        "language": options.language,
        "task": options.task,
        "beam_size": options.beam_size,
        "temperature": options.temperature,
        "word_timestamps": options.word_timestamps,
        "condition_on_previous_text": options.condition_on_previous_text,
        "initial_prompt": options.initial_prompt,
        "hotwords": options.hotwords,
    }
    if batch_size <= 1:
        return model.transcribe(audio, vad_filter=options.vad_filter, **common)
    from faster_whisper import BatchedInferencePipeline

    # A new pipeline per call: it keeps per-transcription state and only wraps the shared model.
    # Timestamps on (faster-whisper's batched default is off): without them a piece comes back as
    # one 30 s segment, and tiny.en was seen to end such a piece early, dropping most of its words.
    batched = BatchedInferencePipeline(model)
    segments, info = batched.transcribe(audio, batch_size=batch_size, vad_filter=True,
                                        vad_parameters=dict(BATCH_VAD), without_timestamps=False, **common)
    # The gaps are decoded in the language the pieces were (it was detected once, if not given).
    return with_gaps_filled(model, audio, segments, {**common, "language": info.language}), info


def with_gaps_filled(
    model: WhisperModel, audio: np.ndarray, segments: Iterable[RawSegment], common: dict[str, Any]
) -> Iterator[RawSegment]:
    """The batched segments, plus whatever the sequential decoder hears in the gaps between them.

    A batched piece is decoded in one pass, and tiny.en often ends a piece that fills most of its
    30 s window early, as if the rest belonged to the next window: the words between its last
    timestamp and the piece's end are lost (sequential decoding would seek there and go on).
    Measured on English speech: 9-18 % WER against 1.4-1.8 % sequential. So every silence in the
    output longer than ``GAP_SECONDS`` is decoded again, sequentially and behind Silero VAD, so
    that a real pause costs a VAD pass and yields nothing, while lost words come back. What a
    gap gives is kept only where Whisper does not itself mark it as failed: a second of near
    silence is where it writes a looping "thank you" (``GAP_MAX_COMPRESSION_RATIO``).
    Lazy like the segments themselves: a gap is decoded when the segment after it arrives."""
    total = len(audio) / SAMPLE_RATE
    previous_end = 0.0
    for segment in segments:
        if segment.start - previous_end > GAP_SECONDS:
            yield from _decode_gap(model, audio, previous_end, segment.start, common)
        yield segment
        previous_end = max(previous_end, segment.end)
    if total - previous_end > GAP_SECONDS:
        yield from _decode_gap(model, audio, previous_end, total, common)


def _decode_gap(
    model: WhisperModel, audio: np.ndarray, start: float, end: float, common: dict[str, Any]
) -> Iterator[RawSegment]:
    piece = audio[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
    found, _ = model.transcribe(piece, vad_filter=True, vad_parameters=dict(BATCH_VAD), **common)
    # Whisper's last timestamp may run past a short piece's end: times are kept inside the gap.
    def moved(t: float) -> float:
        return min(t + start, end)

    for segment in found:
        if segment.compression_ratio > GAP_MAX_COMPRESSION_RATIO or (
                segment.no_speech_prob > GAP_NO_SPEECH_PROB and segment.avg_logprob < GAP_LOW_LOGPROB):
            continue
        words = None if segment.words is None else [
            replace(w, start=moved(w.start), end=moved(w.end)) for w in segment.words]
        yield replace(segment, start=moved(segment.start), end=moved(segment.end), words=words)
