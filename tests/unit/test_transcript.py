"""pipeline/transcript.py: the result types' JSON: optional parts left out until used, and read back with
their types restored."""

from __future__ import annotations

import json

from pipeline.transcript import Redaction, Segment, Speaker, Transcript, Turn, Word


def test_speaker_and_channel_appear_only_when_set() -> None:
    segment = Segment(id=0, start=0.0, end=1.0, text=" a", channel=2, words=(
        Word(start=0.0, end=0.5, word=" a", probability=0.9, speaker="S1"),
        Word(start=0.5, end=1.0, word=" b", probability=0.8, channel=1)))
    data = segment.to_dict()
    assert "speaker" not in data and data["channel"] == 2
    assert data["words"] == [{"start": 0.0, "end": 0.5, "word": " a", "probability": 0.9, "speaker": "S1"},
                             {"start": 0.5, "end": 1.0, "word": " b", "probability": 0.8, "channel": 1}]


def test_a_segment_read_back_has_its_types_restored() -> None:
    data = {"id": 1, "start": 0, "end": 1, "text": " a", "tokens": [5, 6], "channel": "2",
            "words": [{"start": 0.0, "end": 1.0, "word": " a", "probability": 0.5, "channel": 2}]}
    segment = Segment.from_dict(data)
    assert segment.tokens == (5, 6) and segment.channel == 2 and segment.speaker is None
    assert segment.words == (Word(start=0.0, end=1.0, word=" a", probability=0.5, channel=2),)


def test_the_optional_lists_of_a_transcript_are_left_out_until_they_have_something() -> None:
    full = Transcript(text=" a", language="en", duration=2.0, speakers=(Speaker("S1", 1.5),),
                      warnings=("no beam search on this engine",), channels=(1, 2),
                      redactions=(Redaction(0.5, 1.0, "phone_number"),))
    data = full.to_dict()
    assert data["speakers"] == [{"id": "S1", "talk_time": 1.5}]
    assert data["warnings"] == ["no beam search on this engine"]
    assert data["channels"] == [1, 2]
    assert data["redactions"] == [{"start": 0.5, "end": 1.0, "policy": "phone_number"}]
    bare = Transcript(text=" a", language="en", duration=2.0).to_dict()
    assert not {"speakers", "warnings", "channels", "redactions"} & set(bare)


def test_a_full_transcript_survives_json() -> None:
    full = Transcript(
        text=" a", language="en", duration=2.0, language_probability=0.75, task="translate", engine="faster-whisper",
        model="tiny", device="cpu", speakers=(Speaker("S1", 1.5), Speaker("S2", 0.25)), warnings=("w",),
        channels=(1, 2), redactions=(Redaction(0.5, 1.0, "email"),),
        segments=(Segment(id=0, start=0.0, end=2.0, text=" a", speaker="S1", channel=1),))
    assert Transcript.from_dict(json.loads(json.dumps(full.to_dict()))) == full


def test_parts_read_back_from_strings_get_their_types() -> None:
    # JSON written by hand or another language may carry numbers as strings.
    assert Speaker.from_dict({"id": 7, "talk_time": "1.5"}) == Speaker("7", 1.5)
    assert Redaction.from_dict({"start": "1", "end": 2, "policy": "ssn"}) == Redaction(1.0, 2.0, "ssn")
    data = Transcript(text="", language="en", duration=1.0).to_dict() | {"channels": ["1", 2], "warnings": [3]}
    read = Transcript.from_dict(data)
    assert (read.channels, read.warnings) == ((1, 2), ("3",))


def test_a_turns_duration_is_its_length() -> None:
    assert Turn(1.25, 4.0, "S1").duration == 2.75
    assert Turn(2.0, 2.0, "S1").duration == 0.0
