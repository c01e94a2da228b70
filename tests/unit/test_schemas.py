"""api/schemas.py: the request schemas' own rules (ASCII numbers, unknown fields, ranges, defaults)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import pytest

from api import schemas


def errors_of(schema: ma.Schema, data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ma.ValidationError) as caught:
        schema.load(data)
    messages: dict[str, Any] = caught.value.messages  # type: ignore[assignment]
    return messages


@pytest.mark.parametrize("value", ["1_0", "１０", "3.0", "0x10", "", "ten", "٣"])
def test_an_integer_field_takes_ascii_digits_only(value: str) -> None:
    assert errors_of(schemas.TranscribeForm(), {"beam_size": value}) == {"beam_size": ["Not a valid integer."]}


@pytest.mark.parametrize(("value", "expected"), [("5", 5), ("+5", 5), (" 7 ", 7), (4, 4)])
def test_an_integer_field_reads_what_int_would_from_ascii(value: object, expected: int) -> None:
    assert schemas.TranscribeForm().load({"beam_size": value}) == {"beam_size": expected}


@pytest.mark.parametrize(("value", "expected"), [("0.5", 0.5), (".25", 0.25), ("1e-1", 0.1), ("1", 1.0)])
def test_a_float_field_reads_ascii_decimals_and_exponents(value: str, expected: float) -> None:
    assert schemas.TranscribeForm().load({"temperature": value}) == {"temperature": expected}


@pytest.mark.parametrize("value", ["0,5", "nan", "inf", "０.５", "1_0", "0.5.1"])
def test_a_float_field_refuses_anything_else(value: str) -> None:
    assert errors_of(schemas.TranscribeForm(), {"temperature": value}) == {"temperature": ["Not a valid number."]}


def test_a_strict_schema_names_an_unknown_field() -> None:
    assert errors_of(schemas.TranscribeForm(), {"colour": "red"}) == {"colour": ["Unknown field."]}
    assert errors_of(schemas.ListQuery(), {"page": "2"}) == {"page": ["Unknown field."]}


def test_ranges_hold_at_their_edges() -> None:
    form = schemas.TranscribeForm()
    assert form.load({"beam_size": "1", "temperature": "0"}) == {"beam_size": 1, "temperature": 0.0}
    assert form.load({"beam_size": "20", "temperature": "1"}) == {"beam_size": 20, "temperature": 1.0}
    assert set(errors_of(form, {"beam_size": "21", "temperature": "1.01"})) == {"beam_size", "temperature"}
    assert set(errors_of(schemas.ListQuery(), {"limit": "0"})) == {"limit"}


def test_known_speakers_come_in_as_array_fields_and_load_by_their_plain_names() -> None:
    loaded = schemas.TranscribeForm().load({"known_speaker_names[]": ["Ada", "Bo"],
                                            "known_speaker_references[]": ["data:audio/wav;base64,AA=="]})
    assert loaded == {"known_speaker_names": ["Ada", "Bo"],
                      "known_speaker_references": ["data:audio/wav;base64,AA=="]}
    # Without the brackets the name is not a field of the form.
    assert errors_of(schemas.TranscribeForm(), {"known_speaker_names": ["Ada"]}) == {
        "known_speaker_names": ["Unknown field."]}


def test_queries_have_their_defaults() -> None:
    assert schemas.ListQuery().load({}) == {"limit": 20, "all": False}
    assert schemas.ResultQuery().load({}) == {"format": "json", "download": False}
    assert schemas.FormatQuery().load({"format": "srt", "chars_per_caption": "42"}) == {
        "format": "srt", "chars_per_caption": 42}
    assert set(errors_of(schemas.FormatQuery(), {"format": "docx"})) == {"format"}


def test_a_listing_filters_by_a_job_state_and_nothing_else() -> None:
    assert schemas.ListQuery().load({"status": "failed"})["status"] == "failed"
    assert set(errors_of(schemas.ListQuery(), {"status": "done"})) == {"status"}
