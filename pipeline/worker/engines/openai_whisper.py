"""openai-whisper (PyTorch), on the same offline weights as faster-whisper.

openai-whisper has no VAD and no per-segment callback. VAD is faster-whisper's Silero model
applied before decoding, with timestamps mapped back to the original audio. For progress,
openai-whisper's ``transcribe`` reports each decoded 30-second window to a tqdm progress bar;
a bar of ours, installed in its place, reads the segments that window produced and hands
them to the callback, which is how a cancelled job stops within one window.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from pipeline.errors import ModelNotFound, TranscriptionError
from pipeline.media import SAMPLE_RATE
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Segment, Transcript, Word
from pipeline.worker.engines.base import EngineKey, SegmentCallback, build_transcript, require_language
from pipeline.worker.layout import engine_threads

log = logging.getLogger(__name__)

_local = threading.local()
_install_lock = threading.Lock()


class _WindowBar:
    """Stands in for ``tqdm.tqdm`` inside ``whisper.transcribe``; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.total = kwargs.get("total") or 0
        self.n = 0
        self._seen = 0

    def __enter__(self) -> _WindowBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.n += n
        listener: Callable[[list[dict[str, Any]]], None] | None = getattr(_local, "listener", None)
        if listener is None:
            return
        caller = inspect.currentframe()
        segments = caller.f_back.f_locals.get("all_segments") if caller and caller.f_back else None
        if isinstance(segments, list):
            fresh, self._seen = segments[self._seen:], len(segments)
            listener(fresh)


def _install_bar() -> None:
    # ``whisper.transcribe`` the attribute is the function; the module is only in sys.modules.
    module = importlib.import_module("whisper.transcribe")

    with _install_lock:
        if not isinstance(getattr(module, "tqdm", None), SimpleNamespace):
            setattr(module, "tqdm", SimpleNamespace(tqdm=_WindowBar))  # noqa: B010


class OpenAIWhisperEngine:
    name = "openai-whisper"

    def __init__(self, key: EngineKey, source: str, settings: Settings) -> None:
        from pipeline.worker.weights import load_openai_model

        self.model_name = key.model
        self.device = key.device
        self.fp16 = key.compute_type == "float16"
        try:
            if source.endswith(".pt"):
                self.model = load_openai_model(Path(source), device=key.device)
            else:
                import whisper

                self.model = whisper.load_model(source, device=key.device,
                                                download_root=str(settings.model_dir))
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelNotFound(
                f"Model {key.model!r} could not be loaded by openai-whisper "
                f"({exc.__class__.__name__}). Use tiny.en or base (shipped with the service), a "
                "local model, or a downloadable name on a host that reaches the internet."
            ) from exc
        if key.device == "cpu":
            import torch

            # torch's own default is every core, whatever the other transcriber processes use.
            torch.set_num_threads(engine_threads(settings.cpu_threads, key.device, settings.transcriber_processes))
        _install_bar()

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, on_segment: SegmentCallback
    ) -> Transcript:
        import whisper

        require_language(self.model_name, self.model.is_multilingual, options.language)
        source = np.ascontiguousarray(audio, dtype=np.float32)
        restore: Callable[[float, bool], float] = lambda t, is_end: t  # noqa: E731
        if options.vad_filter:
            source, restore = _speech_only(source)
        segments: list[Segment] = []

        def listener(raw_segments: list[dict[str, Any]]) -> None:
            for raw in raw_segments:
                segment = _segment(raw, len(segments), restore)
                segments.append(segment)
                on_segment(segment)

        # whisper.transcribe detects the language itself but keeps only the answer, not its
        # probability: detected here, from the same features, the encoder runs once for both.
        language, probability = options.language, None
        if language is None and self.model.is_multilingual:
            language, probability = _detect_language(self.model, source, self.fp16)
        _local.listener = listener
        try:
            result = whisper.transcribe(
                self.model,
                source,
                language=language,
                task=options.task,
                temperature=options.temperature,
                # openai-whisper samples instead of searching when the temperature is above 0.
                beam_size=options.beam_size if options.temperature == 0 else None,
                best_of=options.beam_size if options.temperature > 0 else None,
                word_timestamps=options.word_timestamps,
                condition_on_previous_text=options.condition_on_previous_text,
                initial_prompt=prompt_with_hotwords(options),
                fp16=self.fp16,
                verbose=None,  # neither its progress bar nor its prints; our bar still runs
            )
        except ValueError as exc:
            raise TranscriptionError(str(exc)) from exc
        finally:
            _local.listener = None
        # Any segments the last window produced after its bar update.
        listener(result["segments"][len(segments):])
        language = result.get("language") or language or "en"
        warnings = (HOTWORDS_WARNING,) if options.hotwords else ()
        return build_transcript(self, audio, options, segments, language=language,
                                language_probability=probability, warnings=warnings)


# openai-whisper has no hotwords; the prompt is the nearest thing it has: text the first window
# (every window with condition_on_previous_text) reads as already said, spellings included.
HOTWORDS_WARNING = ("openai-whisper has no hotwords: they were added to the initial prompt "
                    "instead, which steers the first 30 s window (every window with "
                    "condition_on_previous_text).")


def prompt_with_hotwords(options: TranscribeOptions) -> str | None:
    parts = [p for p in (options.initial_prompt, options.hotwords) if p]
    return " ".join(parts) or None


def _segment(raw: dict[str, Any], index: int, restore: Callable[[float, bool], float]) -> Segment:
    words = None
    if raw.get("words"):
        words = tuple(
            Word(start=round(restore(w["start"], False), 3), end=round(restore(w["end"], True), 3),
                 word=w["word"], probability=round(float(w["probability"]), 4))
            for w in raw["words"]
        )
    return Segment(
        id=index,
        start=round(restore(float(raw["start"]), False), 3),
        end=round(restore(float(raw["end"]), True), 3),
        text=raw["text"],
        tokens=tuple(raw.get("tokens", ())),
        temperature=float(raw.get("temperature", 0.0)),
        avg_logprob=float(raw.get("avg_logprob", 0.0)),
        compression_ratio=float(raw.get("compression_ratio", 0.0)),
        no_speech_prob=float(raw.get("no_speech_prob", 0.0)),
        words=words,
    )


def _speech_only(audio: np.ndarray) -> tuple[np.ndarray, Callable[[float, bool], float]]:
    """Keep the speech that faster-whisper's VAD finds; map times back to the original audio."""
    from faster_whisper.vad import SpeechTimestampsMap, VadOptions, collect_chunks, get_speech_timestamps

    speech = get_speech_timestamps(audio, VadOptions(), sampling_rate=SAMPLE_RATE)
    if not speech:
        return np.zeros(0, dtype=np.float32), lambda t, is_end: t
    chunks, _ = collect_chunks(audio, speech, sampling_rate=SAMPLE_RATE)
    mapping = SpeechTimestampsMap(speech, SAMPLE_RATE)
    return np.concatenate(chunks).astype(np.float32), (
        lambda t, is_end: float(mapping.get_original_time(t, is_end=is_end)))


def _detect_language(model: Any, audio: np.ndarray, fp16: bool) -> tuple[str | None, float | None]:
    """The language of the first 30 s and its probability, from the features whisper.transcribe
    would detect it from (log-mel of the audio padded with 30 s, its first window)."""
    import whisper

    try:
        mel = whisper.log_mel_spectrogram(audio, model.dims.n_mels, padding=whisper.audio.N_SAMPLES)
        segment = whisper.pad_or_trim(mel, whisper.audio.N_FRAMES).to(model.device)
        if fp16 and str(model.device) != "cpu":  # whisper decodes in float32 on a CPU, whatever is asked
            segment = segment.half()
        _, probs = model.detect_language(segment)
    except Exception as exc:  # noqa: BLE001 - a missing probability must not fail the job
        log.warning("language probability unavailable (whisper.transcribe detects the language): %s", exc)
        return None, None
    language = max(probs, key=probs.get)
    return language, round(float(probs[language]), 4)
