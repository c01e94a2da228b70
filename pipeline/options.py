"""Per-request transcription options: parsed and checked once, then carried as a frozen value."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pipeline import redaction, spelling
from pipeline.engine_registry import ENGINE_NAMES
from pipeline.errors import InvalidOption
from pipeline.settings import Settings, model_name_ok

TASKS = ("transcribe", "translate")
# The languages Whisper's tokenizer knows (ISO 639-1, plus haw and yue which have no such code).
LANGUAGES = frozenset(
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no "
    "th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw "
    "gl mr pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl "
    "mg as tt haw ln ha ba jw su yue".split()
)

# A speaker-count hint above this is a mistake rather than a meeting.
MAX_SPEAKERS = 32
# As many reference clips as one request may bring (OpenAI takes 4).
MAX_KNOWN_SPEAKERS = 8

# Numbers as a client writes them, in ASCII. int() and float() also take underscores
# ("1_000"), fullwidth and Arabic-Indic digits and surrounding whitespace; a request is held to
# what it would mean to every other parser.
ASCII_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
ASCII_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def is_ascii_number(text: str, *, integer: bool = False) -> bool:
    return bool((ASCII_INTEGER if integer else ASCII_NUMBER).fullmatch(text.strip(" ")))

# As many channels as a multichannel job transcribes; a file with more is refused.
MAX_CHANNELS = 8

# Hotwords go into every window's prompt, which holds at most 223 tokens: more than this
# crowds out the text before the window and is a list pasted by mistake.
MAX_HOTWORDS = 100
MAX_HOTWORDS_CHARS = 1000


@dataclass(frozen=True)
class TranscribeOptions:
    engine: str = "faster-whisper"
    model: str = "tiny.en"
    language: str | None = None
    task: str = "transcribe"
    word_timestamps: bool = False
    vad_filter: bool = False
    # Off by default, unlike both engines: with it on, one misheard window feeds the next, and
    # tiny.en was seen repeating one phrase for minutes (WER 41 % on 60 s of clear English,
    # 1.8 % with it off, and 2-20 % faster; docs/benchmarks.md). A job split into chunks starts
    # each chunk without context anyway, so off also makes split and whole runs agree.
    condition_on_previous_text: bool = False
    initial_prompt: str | None = None
    # Terms to favour, ", "-joined (faster-whisper's ``hotwords``; openai-whisper: the prompt).
    hotwords: str | None = None
    temperature: float = 0.0
    beam_size: int = 5
    # None: BATCH_SIZE decides (pipeline.worker.engines.batched); 1: sequential; more: batched decoding.
    batch_size: int | None = None
    # Who spoke when (pipeline.worker.diarization), run beside the transcription; the counts are hints.
    diarize: bool = False
    min_speakers: int | None = None
    max_speakers: int | None = None
    # Speakers known by name: each name's reference clip is stored with the job (the API decodes
    # it; messages never carry it) and its digest is here, so the cache key covers the clips.
    known_speaker_names: tuple[str, ...] = ()
    known_speaker_digests: tuple[str, ...] = ()
    # Each audio channel transcribed on its own (pipeline.channels); segments say their channel.
    multichannel: bool = False
    # Canonical JSON of the rules (pipeline.spelling), applied after decoding.
    custom_spelling: str | None = None
    # Personal data replaced after decoding, before anything is stored (pipeline.redaction).
    redact_pii: bool = False
    redact_pii_policies: tuple[str, ...] = ()
    redact_pii_sub: str = "entity_name"
    redact_pii_audio: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> TranscribeOptions:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    def fingerprint(self) -> str:
        """The part of a cache key that depends on options: every field changes the output."""
        return self.to_json()

    @classmethod
    def parse(cls, form: Mapping[str, Any], settings: Settings) -> TranscribeOptions:
        """Build options from form or JSON fields, naming the field in any error."""
        opts = cls(engine=settings.default_engine, model=settings.default_model)
        values: dict[str, Any] = {}
        if "engine" in form:
            engine = _text(form, "engine")
            if engine not in ENGINE_NAMES:
                raise InvalidOption(
                    f"engine must be one of {', '.join(ENGINE_NAMES)}, not {engine!r}", field="engine"
                )
            values["engine"] = engine
        if "model" in form:
            model = _text(form, "model")
            if not model:
                raise InvalidOption("model must not be empty; leave it out for the default.",
                                    field="model")
            allowed = settings.allowed_models
            # A request never names a path, listed or not: it would make a worker read that file.
            if model not in allowed or not model_name_ok(model):
                raise InvalidOption(f"model must be one of {', '.join(allowed)} (MODELS), not {model[:100]!r}",
                                    field="model")
            values["model"] = model
        if "language" in form:
            language = _text(form, "language").lower()
            if language in ("", "auto"):
                values["language"] = None
            elif language not in LANGUAGES:
                raise InvalidOption(
                    f"language must be a code Whisper knows, such as 'en', 'de' or 'fr', "
                    f"not {language!r}",
                    field="language",
                )
            else:
                values["language"] = language
        if "task" in form:
            task = _text(form, "task")
            if task not in TASKS:
                raise InvalidOption(f"task must be 'transcribe' or 'translate', not {task!r}", field="task")
            values["task"] = task
        for name in ("word_timestamps", "vad_filter", "condition_on_previous_text"):
            if name in form:
                values[name] = _flag(form, name)
        if "initial_prompt" in form:
            values["initial_prompt"] = _text(form, "initial_prompt") or None
        if "hotwords" in form:
            values["hotwords"] = _hotwords(form)
        if "temperature" in form:
            values["temperature"] = _float(form, "temperature", 0.0, 1.0)
        if "beam_size" in form:
            values["beam_size"] = int(_float(form, "beam_size", 1, 20, integer=True))
        if "batch_size" in form:
            batch = form["batch_size"]
            values["batch_size"] = (None if isinstance(batch, str) and batch.strip().lower() in ("", "auto")
                                    else int(_float(form, "batch_size", 1, 64, integer=True)))
        if "diarize" in form:
            values["diarize"] = _flag(form, "diarize")
        for name in ("multichannel", "redact_pii", "redact_pii_audio"):
            if name in form:
                values[name] = _flag(form, name)
        if "custom_spelling" in form:
            values["custom_spelling"] = spelling.parse(form["custom_spelling"])
        if "redact_pii_policies" in form:
            values["redact_pii_policies"] = redaction.parse_policies(form["redact_pii_policies"])
        if "redact_pii_sub" in form:
            sub = _text(form, "redact_pii_sub").lower() or "entity_name"
            if sub not in redaction.SUBSTITUTIONS:
                raise InvalidOption(f"redact_pii_sub must be one of {', '.join(redaction.SUBSTITUTIONS)}, "
                                    f"not {sub[:50]!r}", field="redact_pii_sub")
            values["redact_pii_sub"] = sub
        for name in ("min_speakers", "max_speakers"):
            if name in form:
                raw = form[name]
                values[name] = (None if raw is None or (isinstance(raw, str) and not raw.strip())
                                else int(_float(form, name, 1, MAX_SPEAKERS, integer=True)))
        if "known_speaker_names" in form or "known_speaker_digests" in form:
            names = tuple(str(n).strip() for n in form.get("known_speaker_names") or ())
            digests = tuple(str(d) for d in form.get("known_speaker_digests") or ())
            if any(not n for n in names):
                raise InvalidOption("known_speaker_names[] must not hold an empty name", field="known_speaker_names")
            if len(set(names)) != len(names):
                raise InvalidOption("known_speaker_names[] must not name one speaker twice",
                                    field="known_speaker_names")
            if len(names) > MAX_KNOWN_SPEAKERS or any(len(n) > 100 for n in names):
                raise InvalidOption(f"known_speaker_names[] takes at most {MAX_KNOWN_SPEAKERS} names of up to "
                                    "100 characters", field="known_speaker_names")
            if len(names) != len(digests):
                raise InvalidOption(f"known_speaker_names[] and known_speaker_references[] must pair up: "
                                    f"{len(names)} names, {len(digests)} references.",
                                    field="known_speaker_references")
            values["known_speaker_names"], values["known_speaker_digests"] = names, digests
        parsed = replace(opts, **values)
        for name in ("redact_pii_policies", "redact_pii_sub", "redact_pii_audio"):
            if name in form and not parsed.redact_pii and getattr(parsed, name) != getattr(opts, name):
                raise InvalidOption(f"{name} is an option of redaction: give redact_pii=true with it", field=name)
        if parsed.redact_pii and not parsed.redact_pii_policies:
            parsed = replace(parsed, redact_pii_policies=redaction.DEFAULT_POLICIES)
        if not parsed.redact_pii:  # the defaults, so that "off" is one cache key however it was said
            parsed = replace(parsed, redact_pii_policies=(), redact_pii_sub="entity_name", redact_pii_audio=False)
        if parsed.multichannel and parsed.diarize:
            raise InvalidOption("multichannel labels each channel apart; diarize=true (one mix, its "
                                "speakers) cannot be combined with it", field="multichannel")
        if parsed.known_speaker_names and not parsed.diarize:
            raise InvalidOption("known_speaker_names[] names speakers: give diarize=true (or "
                                "response_format=diarized_json) with it", field="known_speaker_names")
        if (parsed.min_speakers is not None and parsed.max_speakers is not None
                and parsed.min_speakers > parsed.max_speakers):
            raise InvalidOption(f"min_speakers ({parsed.min_speakers}) must not be larger than "
                                f"max_speakers ({parsed.max_speakers})", field="min_speakers")
        for name in ("min_speakers", "max_speakers"):
            if getattr(parsed, name) is not None and not parsed.diarize:
                raise InvalidOption(f"{name} is a hint for diarization: give diarize=true with it",
                                    field=name)
        if parsed.model.endswith(".en") and parsed.language not in (None, "en"):
            raise InvalidOption(
                f"{parsed.model} only knows English; choose a multilingual model such as base "
                f"for language={parsed.language!r}.", field="language")
        return parsed


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form[name]
    if not isinstance(value, str):
        raise InvalidOption(f"{name} must be a string", field=name)
    return value.strip()


def _hotwords(form: Mapping[str, Any]) -> str | None:
    """One comma-separated string: the terms, each kept once (a term cannot hold a comma)."""
    raw = form["hotwords"]
    if not isinstance(raw, str):
        raise InvalidOption("hotwords must be a comma-separated string of terms", field="hotwords")
    terms = list(dict.fromkeys(t for t in (part.strip() for part in raw.split(",")) if t))
    if len(terms) > MAX_HOTWORDS:
        raise InvalidOption(f"hotwords may hold at most {MAX_HOTWORDS} terms, not {len(terms)}",
                            field="hotwords")
    joined = ", ".join(terms)
    if len(joined) > MAX_HOTWORDS_CHARS:
        raise InvalidOption(f"hotwords may be at most {MAX_HOTWORDS_CHARS} characters long, "
                            f"not {len(joined)}", field="hotwords")
    return joined or None


def _flag(form: Mapping[str, Any], name: str) -> bool:
    value = form[name]
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise InvalidOption(f"{name} must be true or false, not {value!r}", field=name)


def _float(
    form: Mapping[str, Any], name: str, low: float, high: float, *, integer: bool = False
) -> float:
    value = form[name]
    if isinstance(value, bool):  # JSON true is not a number, whatever float() says
        raise InvalidOption(f"{name} must be a number, not {value!r}", field=name)
    if isinstance(value, str) and not is_ascii_number(value):
        raise InvalidOption(f"{name} must be a number written in ASCII digits, not {value!r}", field=name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidOption(f"{name} must be a number, not {value!r}", field=name) from None
    if not math.isfinite(number):
        raise InvalidOption(f"{name} must be a finite number, not {value!r}", field=name)
    if integer and number != int(number):
        raise InvalidOption(f"{name} must be a whole number, not {value!r}", field=name)
    if not low <= number <= high:
        raise InvalidOption(f"{name} must be between {low:g} and {high:g}, not {value!r}", field=name)
    return number
