"""What every engine implements, and what they share: the language check and the transcript."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.errors import ModelNotFound
from pipeline.media import SAMPLE_RATE
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript

# Called once per decoded segment; raising from it (for example on cancellation) stops decoding.
SegmentCallback = Callable[[Segment], None]


class Engine(Protocol):
    """An engine class is built as ``Class(key, source, settings)``, where ``source`` is what
    its registry resolver made of the model name."""

    name: str
    model_name: str
    device: str

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, on_segment: SegmentCallback
    ) -> Transcript: ...


@dataclass(frozen=True)
class EngineKey:
    engine: str
    model: str
    device: str
    compute_type: str
    # Copies of the model that decode at once: CTranslate2 runs one call per copy and queues
    # the rest, so threads sharing one copy take turns (faster-whisper only; a transcriber's
    # one job needs one).
    replicas: int = 1


def require_language(model_name: str, multilingual: bool, language: str | None) -> None:
    """Refuse a forced language an English-only model cannot transcribe; left alone, the
    engines would decode it as English and answer nonsense."""
    if language and not multilingual and language != "en":
        raise ModelNotFound(f"{model_name} only knows English; use a multilingual model "
                            f"such as base for language={language!r}.")


def build_transcript(
    engine: Engine,
    audio: np.ndarray,
    options: TranscribeOptions,
    segments: Sequence[Segment],
    *,
    language: str,
    language_probability: float | None,
    warnings: tuple[str, ...] = (),
) -> Transcript:
    """The engine's segments as the service's transcript, timed against the audio it was given."""
    return Transcript(
        text="".join(s.text for s in segments).strip(),
        language=language,
        language_probability=language_probability,
        duration=round(len(audio) / SAMPLE_RATE, 3),
        segments=tuple(segments),
        task=options.task,
        engine=engine.name,
        model=engine.model_name,
        device=engine.device,
        warnings=warnings,
    )
