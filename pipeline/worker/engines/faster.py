"""faster-whisper (CTranslate2): the default engine."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from pipeline.errors import ModelNotFound, TranscriptionError
from pipeline.media import SAMPLE_RATE
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Segment, Transcript, Word
from pipeline.worker.engines import batched
from pipeline.worker.engines.base import EngineKey, SegmentCallback, build_transcript, require_language
from pipeline.worker.layout import engine_threads


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(self, key: EngineKey, source: str, settings: Settings) -> None:
        from faster_whisper import WhisperModel

        self.model_name = key.model
        self.device = key.device
        self.batch_setting = settings.batch_size
        try:
            self.model = WhisperModel(
                source, device=key.device, compute_type=key.compute_type,
                cpu_threads=engine_threads(settings.cpu_threads, key.device, settings.transcriber_processes),
                num_workers=key.replicas,
            )
        except (OSError, ValueError) as exc:
            # Offline, an unknown name fails inside the hub client; say what the user can do.
            raise ModelNotFound(
                f"Model {key.model!r} could not be loaded by faster-whisper "
                f"({exc.__class__.__name__}). Use tiny.en or base (shipped with the service), a "
                "local CTranslate2 model folder, or a name from the model hub on a host that "
                "reaches it."
            ) from exc

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, on_segment: SegmentCallback
    ) -> Transcript:
        require_language(self.model_name, self.model.model.is_multilingual, options.language)
        try:
            batch_size = batched.batch_size_for(options.batch_size, self.batch_setting, self.device,
                                                len(audio) / SAMPLE_RATE)
            segments_iter, info = batched.transcribe(self.model, audio, options, batch_size)
        except ValueError as exc:
            raise TranscriptionError(str(exc)) from exc
        segments: list[Segment] = []
        # The generator decodes lazily: each step is one window's worth of work, so the
        # callback runs (and may stop the job) as each segment is decoded, and what the
        # decoder refuses is raised here, not by the call above.
        for raw in _refused_as_transcription_errors(segments_iter):
            words = None
            if raw.words is not None:
                words = tuple(
                    Word(start=round(float(w.start), 3), end=round(float(w.end), 3), word=w.word,
                         probability=round(float(w.probability), 4))
                    for w in raw.words
                )
            segment = Segment(
                id=len(segments),
                start=round(float(raw.start), 3),
                end=round(float(raw.end), 3),
                text=raw.text,
                tokens=tuple(raw.tokens),
                temperature=raw.temperature or 0.0,
                avg_logprob=float(raw.avg_logprob),
                compression_ratio=float(raw.compression_ratio),
                no_speech_prob=float(raw.no_speech_prob),
                words=words,
            )
            segments.append(segment)
            on_segment(segment)
        return build_transcript(self, audio, options, segments, language=info.language,
                                language_probability=round(float(info.language_probability), 4))


def _refused_as_transcription_errors(segments: Iterable[Any]) -> Iterator[Any]:
    iterator = iter(segments)
    while True:
        try:
            raw = next(iterator)
        except StopIteration:
            return
        except ValueError as exc:
            raise TranscriptionError(str(exc)) from exc
        yield raw
