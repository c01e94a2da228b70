"""Speaker diarization, offline: who spoke when.

``diarize`` takes the decoded 16 kHz mono audio and returns speaker turns. Importing this package
stays cheap (no torch, no scipy), because the web process reads ``Turn`` for formats; the engine
and its models load on the first call, once per process and device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.transcript import Turn

if TYPE_CHECKING:
    import numpy as np

    from pipeline.worker.diarization.engine import DiarizationOptions


def use_cpu_threads(threads: int) -> None:
    """torch's CPU threads for this process's diarizations. torch takes every core by default,
    while the transcribers beside it already use them: 72 s of two voices took 1.9 s alone with
    2 threads on 2 cores but 5-13 s while a transcription ran, against 2.8 s alone and 3.0 s
    beside it with 1 (threads that wait by spinning, fighting for the same cores)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def diarize(
    audio: np.ndarray,
    *,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    device: str = "cpu",
    options: DiarizationOptions | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[Turn]:
    """Speaker turns of 16 kHz mono float32 audio (see ``pipeline.worker.diarization.engine.diarize``)."""
    from pipeline.worker.diarization.engine import diarize as run

    return run(audio, min_speakers=min_speakers, max_speakers=max_speakers, device=device, options=options,
               progress=progress)


__all__ = ["Turn", "diarize"]
