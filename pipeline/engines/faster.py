"""faster-whisper (CTranslate2): the default engine."""

from __future__ import annotations

import numpy as np

from pipeline.engines import EngineKey, SegmentCallback
from pipeline.errors import ModelNotFound, TranscriptionError
from pipeline.media import SAMPLE_RATE
from pipeline.models import resolve_ctranslate2
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Segment, Transcript, Word


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(self, key: EngineKey, settings: Settings) -> None:
        from faster_whisper import WhisperModel

        self.model_name = key.model
        self.device = key.device
        source = resolve_ctranslate2(key.model, settings.model_dir)
        try:
            self.model = WhisperModel(
                source, device=key.device, compute_type=key.compute_type,
                cpu_threads=settings.cpu_threads,
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
        if options.language and self.model_name.endswith(".en") and options.language != "en":
            raise ModelNotFound(f"{self.model_name} only knows English; use a multilingual model "
                                f"such as base for language={options.language!r}.")
        try:
            segments_iter, info = self.model.transcribe(
                audio,
                language=options.language,
                task=options.task,
                beam_size=options.beam_size,
                temperature=options.temperature,
                word_timestamps=options.word_timestamps,
                vad_filter=options.vad_filter,
                initial_prompt=options.initial_prompt,
            )
        except ValueError as exc:
            raise TranscriptionError(str(exc)) from exc
        segments: list[Segment] = []
        # The generator decodes lazily: each step is one window's worth of work, so the
        # callback runs (and may stop the job) as each segment is decoded.
        for raw in segments_iter:
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
        return Transcript(
            text="".join(s.text for s in segments).strip(),
            language=info.language,
            language_probability=round(float(info.language_probability), 4),
            duration=round(len(audio) / SAMPLE_RATE, 3),
            segments=tuple(segments),
            task=options.task,
            engine=self.name,
            model=self.model_name,
            device=self.device,
        )
