"""faster-whisper's batched decoder (``BatchedInferencePipeline``) beside its sequential one.

The batched pipeline cuts the recording at pauses (Silero VAD) into pieces of up to 30 s and
decodes ``batch_size`` of them at once: a GPU then works on many windows per call instead of
one. It always uses VAD (it cannot place pieces without it, so ``vad_filter`` has no say) and
never conditions a window on the previous one's text, which also keeps a misheard window from
dragging the next ones into a repetition loop.

Which one runs: the request's ``batch_size`` option, else the ``BATCH_SIZE`` setting, else
(``auto``) ``AUTO_CUDA_BATCH`` on CUDA and the sequential decoder on the CPU, where two engine
threads gain little from batching (measured by ``make gpu-check`` in docs/benchmarks.md). A
batch size of 1 is the sequential decoder.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.options import TranscribeOptions

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.transcribe import Segment as RawSegment
    from faster_whisper.transcribe import TranscriptionInfo

AUTO_CUDA_BATCH = 16  # the batch gpu-check measured best for tiny.en and base on one GPU
# Sequential on the CPU: on 84 s of English, tiny.en int8, 2 shared cores, batch 8 took 4.1 s against
# 4.9 s sequential with 2 threads and 6.2 s against 6.7-7.2 s with 1, single runs on a busy machine:
# a gain within that machine's run-to-run spread, so not yet a reason to change every CPU job's
# segmentation. `make bench` on a quiet machine should settle it (set this to 8 if it holds).
AUTO_CPU_BATCH = 1
# Pieces cut only at pauses of half a second, each padded by 400 ms of its surroundings. With
# faster-whisper's batched defaults (160 ms pauses, 30 ms pad) tiny.en dropped the first
# sentence of some pieces: 14.0 % WER against 2.3 % sequential on 84 s of English, 0.9 % with these.
BATCH_VAD = {"min_silence_duration_ms": 500, "speech_pad_ms": 400}
MAX_BATCH_SIZE = 64


def batch_size_for(requested: int | None, setting: int, device: str) -> int:
    """The batch size a transcription runs with; 1 means the sequential decoder.

    ``requested`` is the request option (None: not given), ``setting`` is ``BATCH_SIZE``
    (0: auto)."""
    if requested:
        return requested
    if setting:
        return setting
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
        "initial_prompt": options.initial_prompt,
    }
    if batch_size <= 1:
        return model.transcribe(audio, vad_filter=options.vad_filter, **common)
    from faster_whisper import BatchedInferencePipeline

    # A new pipeline per call: it keeps per-transcription state and only wraps the shared model.
    # Timestamps on (faster-whisper's batched default is off): without them a piece comes back as
    # one 30 s segment, and tiny.en was seen to end such a piece early, dropping most of its words.
    batched = BatchedInferencePipeline(model)
    return batched.transcribe(audio, batch_size=batch_size, vad_filter=True, vad_parameters=dict(BATCH_VAD),
                              without_timestamps=False, **common)
