"""pipeline/options.py: parsing request options, their JSON form and their cache fingerprint."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from pipeline.errors import InvalidOption
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings

SETTINGS = Settings()


def parse(**form: Any) -> TranscribeOptions:
    return TranscribeOptions.parse(form, SETTINGS)


def invalid(field: str, value: Any) -> InvalidOption:
    with pytest.raises(InvalidOption) as info:
        TranscribeOptions.parse({field: value}, SETTINGS)
    err = info.value
    assert err.field == field
    assert err.to_dict()["field"] == field
    assert err.http_status == 422 and err.code == "invalid_option"
    return err


def test_empty_form_gives_defaults() -> None:
    assert parse() == TranscribeOptions()
    assert TranscribeOptions() == TranscribeOptions(
        engine="faster-whisper", model="tiny.en", language=None, task="transcribe",
        word_timestamps=False, vad_filter=False, condition_on_previous_text=False, initial_prompt=None,
        temperature=0.0, beam_size=5,
    )


def test_defaults_come_from_settings() -> None:
    settings = Settings(default_engine="openai-whisper", default_model="base")
    opts = TranscribeOptions.parse({}, settings)
    assert opts.engine == "openai-whisper" and opts.model == "base"
    # A field in the form still wins over the settings.
    assert TranscribeOptions.parse({"model": "tiny.en"}, settings).model == "tiny.en"


def test_unknown_fields_are_left_to_the_caller() -> None:
    # parse reads only option fields; reporting unknown names is the API's job.
    assert parse(webhook_url="http://x", response_format="srt") == TranscribeOptions()


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TranscribeOptions().model = "base"  # type: ignore[misc]


# -- engine ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["faster-whisper", "openai-whisper", "  openai-whisper "])
def test_engine_valid(value: str) -> None:
    assert parse(engine=value).engine == value.strip()


@pytest.mark.parametrize("value", ["whisperx", "", "Faster-Whisper", "faster_whisper"])
def test_engine_invalid(value: str) -> None:
    err = invalid("engine", value)
    assert "engine" in err.message


def test_engine_must_be_text() -> None:
    invalid("engine", 5)


# -- model -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["tiny.en", "base", " base "])
def test_model_valid(value: str) -> None:
    assert parse(model=value).model == value.strip()


@pytest.mark.parametrize("value", ["large-v3", "small", "Systran/faster-whisper-small", "/etc/passwd",
                                   "../models/base", "~/model", "C:\\models\\base", "tiny.en/../base"])
def test_a_model_outside_models_is_refused_naming_the_allowed_ones(value: str) -> None:
    err = invalid("model", value)
    assert "tiny.en, base" in err.message and "MODELS" in err.message


def test_models_lists_what_a_request_may_ask_for() -> None:
    settings = Settings(models=("small", "large-v3"), default_model="base")
    assert settings.allowed_models == ("small", "large-v3", "base")  # the default always is one
    assert TranscribeOptions.parse({"model": "large-v3"}, settings).model == "large-v3"
    with pytest.raises(InvalidOption, match="small, large-v3, base"):
        TranscribeOptions.parse({"model": "tiny.en"}, settings)


def test_a_default_model_given_as_a_path_is_never_taken_from_a_request() -> None:
    # The operator may point DEFAULT_MODEL at a folder; a request naming that folder is still refused.
    settings = Settings(default_model="/srv/models/custom")
    assert TranscribeOptions.parse({}, settings).model == "/srv/models/custom"
    with pytest.raises(InvalidOption) as info:
        TranscribeOptions.parse({"model": "/srv/models/custom"}, settings)
    assert info.value.field == "model"


@pytest.mark.parametrize("raw", ["/srv/models/x", "../x", "a/b", "~x"])
def test_models_setting_refuses_paths(raw: str) -> None:
    from pipeline.errors import SettingsError

    with pytest.raises(SettingsError, match="MODELS"):
        Settings.from_env({"MODELS": f"tiny.en,{raw}"})


@pytest.mark.parametrize("value", [None, 3, ["base"]])
def test_model_must_be_text(value: Any) -> None:
    invalid("model", value)


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_model_is_refused(value: str) -> None:
    # Refused rather than silently replaced: an empty field is more likely a client bug than a
    # request for the default, which leaving the field out already asks for.
    err = invalid("model", value)
    assert "empty" in err.message


# -- language --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [("en", "en"), ("EN", "en"), (" de ", "de"), ("haw", "haw"), ("yue", "yue"),
     ("", None), ("auto", None), ("AUTO", None), ("  ", None)],
)
def test_language_valid(value: str, expected: str | None) -> None:
    assert parse(language=value, model="base").language == expected


def test_english_only_model_refuses_another_language() -> None:
    assert parse(language="en").language == "en"
    with pytest.raises(InvalidOption) as info:
        parse(language="de")
    assert info.value.field == "language" and "base" in info.value.message


@pytest.mark.parametrize("value", ["e", "english", "en-US", "e1", "12", "en_gb"])
def test_language_invalid(value: str) -> None:
    err = invalid("language", value)
    assert "language" in err.message


def test_language_must_be_text() -> None:
    invalid("language", 1)


@pytest.mark.parametrize("value", ["xx", "zzz", "éé"])
def test_unknown_language_code_is_refused(value: str) -> None:
    invalid("language", value)


# -- task ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["transcribe", "translate"])
def test_task_valid(value: str) -> None:
    assert parse(task=value).task == value


@pytest.mark.parametrize("value", ["summarize", "", "Translate"])
def test_task_invalid(value: str) -> None:
    invalid("task", value)


def test_task_must_be_text() -> None:
    invalid("task", True)


# -- flags -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["word_timestamps", "vad_filter", "condition_on_previous_text"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True), (1, True),
     (False, False), ("false", False), ("0", False), ("no", False), ("off", False), ("", False),
     (0, False)],
)
def test_flags_valid(name: str, value: Any, expected: bool) -> None:
    opts = parse(**{name: value})
    assert getattr(opts, name) is expected


@pytest.mark.parametrize("name", ["word_timestamps", "vad_filter", "condition_on_previous_text"])
@pytest.mark.parametrize("value", ["maybe", "2", "y", [], None])
def test_flags_invalid(name: str, value: Any) -> None:
    invalid(name, value)


# -- initial_prompt --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [("Glossary: Kubernetes, Dramatiq.", "Glossary: Kubernetes, Dramatiq."), ("  hi  ", "hi"),
     ("", None), ("   ", None)],
)
def test_initial_prompt_valid(value: str, expected: str | None) -> None:
    assert parse(initial_prompt=value).initial_prompt == expected


def test_initial_prompt_must_be_text() -> None:
    invalid("initial_prompt", 42)


# -- temperature -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0.0), ("0.5", 0.5), (" 0.2 ", 0.2), ("1", 1.0), (0.3, 0.3), (1, 1.0)]
)
def test_temperature_valid(value: Any, expected: float) -> None:
    opts = parse(temperature=value)
    assert opts.temperature == expected and isinstance(opts.temperature, float)


@pytest.mark.parametrize("value", ["-0.1", "1.01", "2", "abc", "", "nan", "inf", "-inf", None, [0.2]])
def test_temperature_invalid(value: Any) -> None:
    err = invalid("temperature", value)
    assert "temperature" in err.message


# -- beam_size -------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("5", 5), ("20", 20), ("5.0", 5), (8, 8)])
def test_beam_size_valid(value: Any, expected: int) -> None:
    opts = parse(beam_size=value)
    assert opts.beam_size == expected and type(opts.beam_size) is int


@pytest.mark.parametrize("value", ["0", "21", "-1", "2.5", "abc", "", None])
def test_beam_size_invalid(value: Any) -> None:
    err = invalid("beam_size", value)
    assert "beam_size" in err.message


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_beam_size_non_finite_is_an_invalid_option(value: str) -> None:
    invalid("beam_size", value)


# -- all at once, JSON form, fingerprint -----------------------------------------------------
FULL = {
    "engine": "openai-whisper",
    "model": "base",
    "language": "de",
    "task": "translate",
    "word_timestamps": "true",
    "vad_filter": "1",
    "condition_on_previous_text": "yes",
    "initial_prompt": "Hallo",
    "temperature": "0.4",
    "beam_size": "3",
}


def test_every_field_at_once() -> None:
    assert TranscribeOptions.parse(FULL, SETTINGS) == TranscribeOptions(
        engine="openai-whisper", model="base", language="de", task="translate", word_timestamps=True,
        vad_filter=True, condition_on_previous_text=True, initial_prompt="Hallo", temperature=0.4, beam_size=3,
    )


@pytest.mark.parametrize("opts", [TranscribeOptions(), TranscribeOptions.parse(FULL, SETTINGS)])
def test_json_round_trip(opts: TranscribeOptions) -> None:
    raw = opts.to_json()
    # Tuples (the known speakers) are JSON lists.
    assert json.loads(raw) == {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(opts).items()}
    back = TranscribeOptions.from_json(raw)
    assert back == opts
    assert back.to_json() == raw


def test_from_json_ignores_unknown_keys_and_fills_missing_ones() -> None:
    raw = json.dumps({"model": "base", "from_a_newer_version": 1})
    assert TranscribeOptions.from_json(raw) == TranscribeOptions(model="base")


def test_fingerprint_is_stable_for_equal_options() -> None:
    a = TranscribeOptions.parse(FULL, SETTINGS)
    b = TranscribeOptions.parse(dict(reversed(list(FULL.items()))), SETTINGS)
    assert a.fingerprint() == b.fingerprint()
    assert TranscribeOptions().fingerprint() == parse().fingerprint()


CHANGES: dict[str, Any] = {
    "engine": "openai-whisper",
    "model": "base",
    "language": "en",
    "task": "translate",
    "word_timestamps": True,
    "vad_filter": True,
    "condition_on_previous_text": True,
    "initial_prompt": "context",
    "hotwords": "ComfyUI",
    "temperature": 0.2,
    "beam_size": 1,
    "batch_size": 8,
    "diarize": True,
    "min_speakers": 2,
    "max_speakers": 3,
    "known_speaker_names": ("Ada",),
    "known_speaker_digests": ("a" * 64,),
    "multichannel": True,
    "custom_spelling": '[[["sequel"], "SQL"]]',
    "redact_pii": True,
    "redact_pii_policies": ("email_address",),
    "redact_pii_sub": "hash",
    "redact_pii_audio": True,
}


def test_changes_cover_every_field() -> None:
    assert set(CHANGES) == {f.name for f in dataclasses.fields(TranscribeOptions)}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_fingerprint_differs_when_one_option_differs(name: str) -> None:
    base = TranscribeOptions()
    changed = dataclasses.replace(base, **{name: CHANGES[name]})
    assert changed != base
    assert changed.fingerprint() != base.fingerprint()


def test_fingerprints_of_all_single_changes_are_distinct() -> None:
    prints = {TranscribeOptions().fingerprint()}
    prints |= {dataclasses.replace(TranscribeOptions(), **{k: v}).fingerprint() for k, v in CHANGES.items()}
    assert len(prints) == len(CHANGES) + 1


# -- speakers --------------------------------------------------------------------------------
def test_diarize_and_its_hints() -> None:
    assert parse().diarize is False
    opts = parse(diarize="true", min_speakers="2", max_speakers=4)
    assert (opts.diarize, opts.min_speakers, opts.max_speakers) == (True, 2, 4)
    assert parse(diarize=True, min_speakers="", max_speakers=None).min_speakers is None
    assert parse(diarize="1", min_speakers=3, max_speakers=3).max_speakers == 3


@pytest.mark.parametrize(("form", "field"), [
    ({"diarize": "true", "min_speakers": 3, "max_speakers": 2}, "min_speakers"),
    ({"diarize": "true", "min_speakers": 0}, "min_speakers"),
    ({"diarize": "true", "max_speakers": "two"}, "max_speakers"),
    ({"diarize": "true", "max_speakers": 1.5}, "max_speakers"),
    ({"diarize": "true", "max_speakers": 1000}, "max_speakers"),
    ({"min_speakers": 2}, "min_speakers"),  # a hint without diarize is a mistake
    ({"diarize": "maybe"}, "diarize"),
])
def test_bad_speaker_options_name_their_field(form: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidOption) as info:
        TranscribeOptions.parse(form, SETTINGS)
    assert info.value.field == field
    assert field in info.value.message


def test_known_speakers_pair_up_need_diarize_and_round_trip() -> None:
    form = {"diarize": "true", "known_speaker_names": ["Ada", "Bob"], "known_speaker_digests": ["a" * 64, "b" * 64]}
    opts = TranscribeOptions.parse(form, SETTINGS)
    assert opts.known_speaker_names == ("Ada", "Bob")
    back = TranscribeOptions.from_json(opts.to_json())
    assert back == opts and back.fingerprint() != TranscribeOptions(diarize=True).fingerprint()
    other = TranscribeOptions.parse({**form, "known_speaker_digests": ["a" * 64, "c" * 64]}, SETTINGS)
    assert other.fingerprint() != opts.fingerprint()  # another clip, another cache entry
    for bad, field in (({**form, "known_speaker_digests": ["a" * 64]}, "known_speaker_references"),
                       ({**form, "diarize": "false"}, "known_speaker_names"),
                       ({**form, "known_speaker_names": ["Ada", "Ada"]}, "known_speaker_names"),
                       ({**form, "known_speaker_names": ["Ada", " "]}, "known_speaker_names")):
        with pytest.raises(InvalidOption) as info:
            TranscribeOptions.parse(bad, SETTINGS)
        assert info.value.field == field
