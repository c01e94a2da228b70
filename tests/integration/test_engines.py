"""Both engines, every transcription option, the model cache and device choice, in-process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.engine_registry import ENGINE_NAMES, ENGINE_SPECS, engine_spec
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Segment, Transcript
from pipeline.worker import layout
from pipeline.worker.context import Context
from pipeline.worker.engines import (
    Engine,
    EngineKey,
    ModelCache,
    build_engine,
    choose_device,
    default_compute_type,
)
from pipeline.worker.gpu import GpuMetrics
from tests.support.helpers import FIXTURES, JFK_TEXT, ROOT, SPEECH_EN, normalise, shared_audio, wer

ENGINES = ENGINE_NAMES


def run(ctx: Context, audio: np.ndarray, **options: object) -> tuple[Transcript, list[Segment]]:
    opts = replace(TranscribeOptions(), **options)  # type: ignore[arg-type]
    seen: list[Segment] = []
    engine = ctx.models.get(ctx.models.key_for(opts, "cpu"))
    return engine.transcribe(audio, opts, seen.append), seen


# Greedy where the search is not what a test is about: on a CPU, beam search costs openai-whisper
# up to twice the time of a greedy decode. The defaults are decoded in
# test_engine_transcribes_and_reports_each_segment, the prompt test and
# test_temperature_and_beam_size.
GREEDY = {"beam_size": 1}


def shared(name: str) -> np.ndarray:
    return decode_audio(shared_audio(name))


@pytest.fixture(scope="module")
def en() -> np.ndarray:
    return decode_audio(SPEECH_EN)


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_transcribes_and_reports_each_segment(ctx: Context, en: np.ndarray, engine: str) -> None:
    transcript, seen = run(ctx, en, engine=engine)
    assert transcript.engine == engine and transcript.model == "tiny.en" and transcript.device == "cpu"
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(len(en) / SAMPLE_RATE, abs=0.01)
    assert list(transcript.segments) == seen and seen
    assert wer((FIXTURES / "speech_en.txt").read_text(), transcript.text) <= 0.15
    for segment in transcript.segments:
        assert 0 <= segment.start < segment.end <= transcript.duration + 0.5
        assert segment.tokens and segment.avg_logprob < 0 and 0 <= segment.no_speech_prob <= 1


def test_both_engines_give_the_same_words_on_jfk(ctx: Context) -> None:
    audio = shared("jfk.flac")
    texts = [run(ctx, audio, engine=engine)[0].text for engine in ENGINES]
    assert len(texts) >= 2
    assert all(normalise(text).split() == normalise(texts[0]).split() for text in texts)
    assert wer(JFK_TEXT, texts[0]) <= 0.10


@pytest.mark.parametrize("engine", ENGINES)
def test_language_detection_with_probability(ctx: Context, engine: str) -> None:
    for name, language in (("speech_de.wav", "de"), ("speech_fr.wav", "fr")):
        transcript, _ = run(ctx, decode_audio(FIXTURES / name), engine=engine, model="base", **GREEDY)
        assert transcript.language == language, (name, transcript.text)
        assert transcript.language_probability is not None and 0.2 < transcript.language_probability <= 1


def test_german_half_of_the_multilingual_recording(ctx: Context) -> None:
    german = shared("multilingual.mp3")[32 * SAMPLE_RATE : 47 * SAMPLE_RATE]
    transcript, _ = run(ctx, german, model="base", **GREEDY)
    assert transcript.language == "de" and (transcript.language_probability or 0) > 0.9
    assert {"software", "dokumentationsdateien"} & set(normalise(transcript.text).split())


# A language given in the request is not detected: faster-whisper reports it as certain, and
# openai-whisper, which only measures a language it detected, reports no probability.
FORCED_LANGUAGE_PROBABILITY = {"faster-whisper": 1.0, "openai-whisper": None}


@pytest.mark.parametrize("engine", ENGINES)
def test_forced_language_and_translation(ctx: Context, engine: str) -> None:
    german = decode_audio(FIXTURES / "speech_de.wav")
    forced, _ = run(ctx, german, engine=engine, model="base", language="de", **GREEDY)
    assert forced.language == "de"
    assert forced.language_probability == FORCED_LANGUAGE_PROBABILITY[engine]
    assert "morgen" in normalise(forced.text)
    translated, _ = run(ctx, german, engine=engine, model="base", language="de", task="translate",
                        **GREEDY)
    assert translated.task == "translate"
    words = set(normalise(translated.text).split())
    assert {"morning", "weather", "today"} & words, translated.text
    assert "morgen" not in words


@pytest.mark.parametrize("engine", ENGINES)
def test_word_timestamps(ctx: Context, en: np.ndarray, engine: str) -> None:
    transcript, _ = run(ctx, en, engine=engine, word_timestamps=True, **GREEDY)
    words = [w for s in transcript.segments for w in (s.words or ())]
    assert len(words) >= 10
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    for segment in transcript.segments:
        for word in segment.words or ():
            assert segment.start - 0.5 <= word.start <= word.end <= segment.end + 0.5
            assert 0 <= word.probability <= 1
    plain, _ = run(ctx, en, engine=engine, **GREEDY)
    assert all(s.words is None for s in plain.segments)


@pytest.mark.parametrize("engine", ENGINES)
def test_vad_filter_skips_silence_and_keeps_timestamps(ctx: Context, en: np.ndarray, engine: str) -> None:
    padded = np.concatenate([np.zeros(8 * SAMPLE_RATE, dtype=np.float32), en])
    transcript, _ = run(ctx, padded, engine=engine, vad_filter=True, **GREEDY)
    assert transcript.segments
    # Times refer to the original audio, silence included.
    assert transcript.segments[0].start >= 7.0
    assert transcript.duration == pytest.approx(len(padded) / SAMPLE_RATE, abs=0.01)
    assert wer((FIXTURES / "speech_en.txt").read_text(), transcript.text) <= 0.2


def test_vad_filter_on_silence_gives_an_empty_transcript(ctx: Context) -> None:
    silence = np.zeros(5 * SAMPLE_RATE, dtype=np.float32)
    for engine in ENGINES:
        transcript, _ = run(ctx, silence, engine=engine, vad_filter=True)
        assert transcript.text == "" and transcript.segments == ()


@pytest.mark.parametrize("engine", ENGINES)
def test_initial_prompt_steers_spelling(ctx: Context, engine: str) -> None:
    audio = shared("hotwords.mp3")
    without, _ = run(ctx, audio, engine=engine)
    prompted, _ = run(ctx, audio, engine=engine, initial_prompt="ComfyUI")
    assert "ComfyUI" in prompted.text
    assert "ComfyUI" not in without.text


@pytest.mark.parametrize("engine", ENGINES)
def test_temperature_and_beam_size(ctx: Context, en: np.ndarray, engine: str) -> None:
    reference = (FIXTURES / "speech_en.txt").read_text()
    greedy, _ = run(ctx, en, engine=engine, beam_size=1)
    sampled, _ = run(ctx, en, engine=engine, temperature=0.6)
    assert wer(reference, greedy.text) <= 0.2
    assert wer(reference, sampled.text) <= 0.5
    # Sampling is used only above temperature 0; each segment records the one it used.
    assert all(s.temperature == pytest.approx(0.6) for s in sampled.segments)
    assert all(s.temperature == 0 for s in greedy.segments)


def test_english_only_model_refuses_another_language(ctx: Context, en: np.ndarray) -> None:
    from pipeline.errors import ModelNotFound

    for engine in ENGINES:
        with pytest.raises(ModelNotFound, match="only knows English"):
            run(ctx, en, engine=engine, language="de")


def test_unknown_model_name_is_a_clear_error_offline(ctx: Context, en: np.ndarray) -> None:
    from pipeline.errors import ModelNotFound

    with pytest.raises(ModelNotFound, match="could not be loaded"):
        run(ctx, en, model="/nonexistent/model-folder-that-is-no-name")


# -- the registry ----------------------------------------------------------------------------
def test_every_registered_engine_and_resolver_loads(settings: Settings) -> None:
    assert {"faster-whisper", "openai-whisper"} <= set(ENGINE_NAMES)  # the two the service promises
    for spec in ENGINE_SPECS:
        assert engine_spec(spec.name) is spec
        assert spec.engine_class().name == spec.name
        # Every resolver answers for the shipped models without the network.
        source = spec.resolve("tiny.en", settings.model_dir)
        assert source != "tiny.en" and Path(source).exists()


def test_an_unknown_engine_is_named_in_the_error(settings: Settings) -> None:
    from pipeline.errors import ModelNotFound

    with pytest.raises(ModelNotFound, match=r"'whisperx'.*faster-whisper, openai-whisper"):
        build_engine(EngineKey("whisperx", "tiny.en", "cpu", "int8"), settings)
    with pytest.raises(ModelNotFound, match="'whisperx'"):
        default_compute_type(settings, "whisperx", "cpu")


LAYOUTS = (("auto", "2"), ("auto", "1"), ("3", "auto"))


def test_openai_whisper_uses_the_threads_the_layout_gives_it(settings: Settings) -> None:
    """torch would take every core; with CPU_THREADS=auto it gets the layout's share, as
    faster-whisper does. In a process of its own, since torch's thread count is process-wide;
    one process builds the engine under each layout in turn (each build sets the count)."""
    code = (
        "import os, sys, torch\n"
        "from pipeline.worker.engines import EngineKey, build_engine\n"
        "from pipeline.settings import Settings\n"
        "for threads, processes in zip(sys.argv[1::2], sys.argv[2::2], strict=True):\n"
        "    settings = Settings.from_env({**os.environ, 'CPU_THREADS': threads,\n"
        "                                  'TRANSCRIBER_PROCESSES': processes})\n"
        "    build_engine(EngineKey('openai-whisper', 'tiny.en', 'cpu', 'float32'), settings)\n"
        "    print(torch.get_num_threads())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "DEVICE": "cpu", "MODEL_DIR": str(settings.model_dir)}
    out = subprocess.run([sys.executable, "-c", code, *(v for pair in LAYOUTS for v in pair)],
                         capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = [layout.engine_threads(Settings.from_env({"CPU_THREADS": threads}).cpu_threads, "cpu",
                                      Settings.from_env({"TRANSCRIBER_PROCESSES": processes}).transcriber_processes)
                for threads, processes in LAYOUTS]
    assert [int(n) for n in out.stdout.split()[-len(LAYOUTS):]] == expected


# -- the per-process model cache --------------------------------------------------------------
class Counting:
    def __init__(self) -> None:
        self.built: list[EngineKey] = []
        self.lock = threading.Lock()

    def __call__(self, key: EngineKey, settings: Settings) -> Engine:
        with self.lock:
            self.built.append(key)
        return build_engine(key, settings)


def test_models_stay_loaded_and_load_once_across_threads(settings: Settings) -> None:
    factory = Counting()
    cache = ModelCache(settings, factory)
    key = cache.key_for(TranscribeOptions(), "cpu")
    got: list[Engine] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(key))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(factory.built) == 1 and len({id(e) for e in got}) == 1
    assert cache.get(key) is got[0] and cache.loaded() == [key]


def test_model_cache_is_bounded_and_drops_idle_models(settings: Settings) -> None:
    factory = Counting()
    cache = ModelCache(replace(settings, model_cache_size=1, model_idle_timeout=1), factory)
    tiny = cache.key_for(TranscribeOptions(), "cpu")
    base = cache.key_for(TranscribeOptions(model="base"), "cpu")
    cache.get(tiny)
    cache.get(base)
    assert cache.loaded() == [base]  # the least recently used went
    time.sleep(1.2)
    cache.sweep()
    assert cache.loaded() == []
    cache.get(base)
    assert factory.built == [tiny, base, base]


def test_compute_type_defaults(settings: Settings) -> None:
    assert default_compute_type(settings, "faster-whisper", "cpu") == "int8"
    assert default_compute_type(settings, "faster-whisper", "cuda") == "float16"
    assert default_compute_type(settings, "openai-whisper", "cpu") == "float32"
    assert default_compute_type(settings, "openai-whisper", "cuda") == "float16"
    assert default_compute_type(replace(settings, compute_type="int8_float16"), "faster-whisper",
                                "cuda") == "int8_float16"


# -- device choice ---------------------------------------------------------------------------
def gpu(used: int, total: int = 100) -> GpuMetrics:
    return GpuMetrics(index=0, name="test", memory_total=total, memory_used=used, utilization=5,
                      temperature=40)


def test_device_choice(settings: Settings) -> None:
    auto = replace(settings, device="auto", gpu_memory_threshold=0.9)
    assert choose_device(auto, has_cuda=lambda: False).device == "cpu"
    assert choose_device(auto, has_cuda=lambda: True, metrics=lambda: [gpu(50)]).device == "cuda"
    full = choose_device(auto, has_cuda=lambda: True, metrics=lambda: [gpu(95)])
    assert full.device == "cpu" and "GPU_MEMORY_THRESHOLD" in full.reason
    # One GPU with room is enough.
    assert choose_device(auto, has_cuda=lambda: True, metrics=lambda: [gpu(95), gpu(10)]).device == "cuda"
    assert choose_device(replace(settings, device="cpu"), has_cuda=lambda: True).device == "cpu"
    assert choose_device(replace(settings, device="cuda"), has_cuda=lambda: False).device == "cpu"
