"""pipeline/formats.py and pipeline/transcript.py: every download format, checked by independent parsers."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import timedelta

import pytest
import srt
import webvtt

from pipeline.errors import InvalidOption
from pipeline.formats import FORMATS, check_format, render, to_diarized_json
from pipeline.transcript import Segment, Speaker, Transcript, Word

TWO = Transcript(
    text="Hello there. General Kenobi!",
    language="en",
    duration=3.5,
    segments=(
        Segment(id=0, start=0.0, end=1.25, text=" Hello there."),
        Segment(id=1, start=1.5, end=3.456, text=" General Kenobi!"),
    ),
)

GOLDEN = {
    "srt": (
        "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n"
        "\n"
        "2\n00:00:01,500 --> 00:00:03,456\nGeneral Kenobi!\n"
    ),
    "vtt": (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.250\nHello there.\n"
        "\n"
        "00:00:01.500 --> 00:00:03.456\nGeneral Kenobi!\n"
    ),
    "tsv": "start\tend\ttext\n0\t1250\tHello there.\n1500\t3456\tGeneral Kenobi!\n",
    "text": "Hello there. General Kenobi!\n",
    "json": (
        '{"text": "Hello there. General Kenobi!", "language": "en", "duration": 3.5, "segments": ['
        '{"id": 0, "start": 0.0, "end": 1.25, "text": " Hello there."}, '
        '{"id": 1, "start": 1.5, "end": 3.456, "text": " General Kenobi!"}]}'
    ),
}

CONTENT_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "rttm": "text/plain; charset=utf-8",
}


def rich_transcript() -> Transcript:
    """Segments with every field set, words, and timestamps past one hour."""
    return Transcript(
        text="Intro. Later on. Much later.",
        language="en",
        language_probability=0.98,
        duration=7300.0,
        task="translate",
        engine="faster-whisper",
        model="tiny.en",
        device="cpu",
        segments=(
            Segment(id=0, start=0.0, end=2.0, text=" Intro.", tokens=(50364, 5106, 13), temperature=0.0,
                    avg_logprob=-0.25, compression_ratio=1.1, no_speech_prob=0.01,
                    words=(Word(0.0, 2.0, " Intro.", 0.9),)),
            Segment(id=1, start=3599.5, end=3601.25, text=" Later on.", tokens=(1, 2), temperature=0.2,
                    avg_logprob=-0.5, compression_ratio=1.3, no_speech_prob=0.02,
                    words=(Word(3599.5, 3600.2, " Later", 0.8), Word(3600.2, 3601.25, " on.", 0.7))),
            Segment(id=2, start=7199.999, end=7261.0015, text=" Much later.", tokens=(3,),
                    temperature=0.4, avg_logprob=-0.75, compression_ratio=1.5, no_speech_prob=0.03,
                    words=(Word(7199.999, 7261.0015, " Much later.", 0.6),)),
        ),
    )


# -- golden strings --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_output(name: str) -> None:
    body, content_type = render(TWO, name)
    assert body == GOLDEN[name]
    assert content_type == CONTENT_TYPES[name]


def test_golden_verbose_json() -> None:
    body, content_type = render(TWO, "verbose_json")
    assert content_type == "application/json"
    assert json.loads(body) == {
        "task": "transcribe",
        "language": "en",
        "duration": 3.5,
        "text": "Hello there. General Kenobi!",
        "segments": [
            {"id": 0, "seek": 0, "start": 0.0, "end": 1.25, "text": " Hello there.", "tokens": [],
             "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0},
            {"id": 1, "seek": 0, "start": 1.5, "end": 3.456, "text": " General Kenobi!", "tokens": [],
             "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0},
        ],
    }


def test_every_format_has_a_content_type() -> None:
    assert {name: ct for name, (_, ct) in FORMATS.items()} == CONTENT_TYPES


# -- independent parsers ---------------------------------------------------------------------
def test_srt_parses_strictly() -> None:
    subs = list(srt.parse(render(TWO, "srt")[0], ignore_errors=False))
    assert [s.index for s in subs] == [1, 2]
    assert [s.start for s in subs] == [timedelta(0), timedelta(seconds=1.5)]
    assert [s.end for s in subs] == [timedelta(seconds=1.25), timedelta(seconds=3.456)]
    assert [s.content for s in subs] == ["Hello there.", "General Kenobi!"]


def test_vtt_parses() -> None:
    vtt = webvtt.from_buffer(io.StringIO(render(TWO, "vtt")[0]))
    captions = list(vtt.captions)
    assert [(c.start, c.end, c.text) for c in captions] == [
        ("00:00:00.000", "00:00:01.250", "Hello there."),
        ("00:00:01.500", "00:00:03.456", "General Kenobi!"),
    ]


def test_timestamps_beyond_one_hour() -> None:
    t = rich_transcript()
    body = render(t, "srt")[0]
    assert "01:00:00" not in body.splitlines()[1]
    assert "00:59:59,500 --> 01:00:01,250" in body
    # 7199.999 s is 1:59:59.999; 7261.0015 s rounds to 2:01:01.002 (or .001, both are 1 ms apart).
    assert "01:59:59,999 --> 02:01:01,00" in body
    subs = list(srt.parse(body, ignore_errors=False))
    assert subs[1].start == timedelta(seconds=3599.5)
    assert subs[1].end == timedelta(hours=1, seconds=1.25)
    assert subs[2].start == timedelta(hours=1, minutes=59, seconds=59.999)
    assert abs(subs[2].end - timedelta(hours=2, minutes=1, seconds=1.0015)) <= timedelta(milliseconds=1)

    vtt_body = render(t, "vtt")[0]
    captions = list(webvtt.from_buffer(io.StringIO(vtt_body)).captions)
    assert [c.start for c in captions] == ["00:00:00.000", "00:59:59.500", "01:59:59.999"]
    assert captions[1].end == "01:00:01.250"
    assert captions[2].start_in_seconds == 7199

    tsv = render(t, "tsv")[0].splitlines()
    assert tsv[2] == "3599500\t3601250\tLater on."
    assert tsv[3].startswith("7199999\t726100")


def test_timestamps_round_to_milliseconds_without_overflowing_fields() -> None:
    t = Transcript(text="x", language="en", duration=70, segments=(
        Segment(id=0, start=59.9996, end=60.0004, text="x"),
        Segment(id=1, start=3599.9999, end=3600.0001, text="y"),
    ))
    body = render(t, "srt")[0]
    assert "00:01:00,000 --> 00:01:00,000" in body
    assert "01:00:00,000 --> 01:00:00,000" in body
    list(srt.parse(body, ignore_errors=False))


def test_negative_start_is_clamped_to_zero() -> None:
    seg = Segment(id=0, start=-0.02, end=0.5, text="x")
    t = Transcript(text="x", language="en", duration=1, segments=(seg,))
    assert "00:00:00,000 --> 00:00:00,500" in render(t, "srt")[0]
    assert "00:00:00.000 --> 00:00:00.500" in render(t, "vtt")[0]


# -- empty and whitespace segments -----------------------------------------------------------
WITH_BLANKS = Transcript(
    text="One. Two.",
    language="en",
    duration=6.0,
    segments=(
        Segment(id=0, start=0.0, end=1.0, text=" One."),
        Segment(id=1, start=1.0, end=2.0, text=""),
        Segment(id=2, start=2.0, end=3.0, text="   "),
        Segment(id=3, start=3.0, end=4.0, text="\n\t"),
        Segment(id=4, start=4.0, end=5.0, text=" Two. "),
    ),
)


def test_blank_segments_are_skipped_in_srt_and_numbering_stays_contiguous() -> None:
    body = render(WITH_BLANKS, "srt")[0]
    subs = list(srt.parse(body, ignore_errors=False))
    assert [s.index for s in subs] == [1, 2]
    assert [s.content for s in subs] == ["One.", "Two."]
    assert subs[1].start == timedelta(seconds=4)
    assert body == "1\n00:00:00,000 --> 00:00:01,000\nOne.\n\n2\n00:00:04,000 --> 00:00:05,000\nTwo.\n"


def test_blank_segments_are_skipped_in_vtt() -> None:
    body = render(WITH_BLANKS, "vtt")[0]
    captions = list(webvtt.from_buffer(io.StringIO(body)).captions)
    assert [c.text for c in captions] == ["One.", "Two."]
    assert "-->" not in body.split("Two.")[1]


def test_blank_segments_are_skipped_in_tsv() -> None:
    assert render(WITH_BLANKS, "tsv")[0] == "start\tend\ttext\n0\t1000\tOne.\n4000\t5000\tTwo.\n"


def test_blank_segments_are_kept_in_json_formats() -> None:
    # The JSON formats are data, not subtitles: every segment (and its id) stays.
    assert len(json.loads(render(WITH_BLANKS, "json")[0])["segments"]) == 5
    assert len(json.loads(render(WITH_BLANKS, "verbose_json")[0])["segments"]) == 5


def test_transcript_without_segments() -> None:
    empty = Transcript(text="", language="en", duration=0.0)
    assert render(empty, "srt")[0] == ""
    assert list(srt.parse(render(empty, "srt")[0], ignore_errors=False)) == []
    assert render(empty, "vtt")[0] == "WEBVTT\n\n"
    assert list(webvtt.from_buffer(io.StringIO(render(empty, "vtt")[0])).captions) == []
    assert render(empty, "tsv")[0] == "start\tend\ttext\n"
    assert render(empty, "text")[0] == "\n"
    assert json.loads(render(empty, "json")[0])["segments"] == []


# -- tsv -------------------------------------------------------------------------------------
def test_tsv_uses_integer_milliseconds_and_no_tabs_inside_text() -> None:
    t = Transcript(text="", language="en", duration=3, segments=(
        Segment(id=0, start=0.0004, end=1.2346, text=" a\tb "),
        Segment(id=1, start=1.5, end=2.9999, text="c"),
    ))
    rows = [line.split("\t") for line in render(t, "tsv")[0].splitlines()]
    assert rows == [["start", "end", "text"], ["0", "1235", "a b"], ["1500", "3000", "c"]]
    for row in rows[1:]:
        assert all(cell.isdigit() for cell in row[:2])


# -- verbose_json ----------------------------------------------------------------------------
def test_verbose_json_carries_every_segment_field_and_words() -> None:
    t = rich_transcript()
    body = json.loads(render(t, "verbose_json")[0])
    assert body["task"] == "translate"
    assert body["language"] == "en"
    assert body["duration"] == 7300.0
    assert body["text"] == t.text
    assert len(body["segments"]) == 3
    for got, seg in zip(body["segments"], t.segments, strict=True):
        assert got["id"] == seg.id
        assert got["start"] == seg.start and got["end"] == seg.end
        assert got["text"] == seg.text
        assert got["tokens"] == list(seg.tokens)
        assert got["temperature"] == seg.temperature
        assert got["avg_logprob"] == seg.avg_logprob
        assert got["compression_ratio"] == seg.compression_ratio
        assert got["no_speech_prob"] == seg.no_speech_prob
    assert body["words"] == [
        {"word": " Intro.", "start": 0.0, "end": 2.0},
        {"word": " Later", "start": 3599.5, "end": 3600.2},
        {"word": " on.", "start": 3600.2, "end": 3601.25},
        {"word": " Much later.", "start": 7199.999, "end": 7261.0015},
    ]


def test_verbose_json_has_no_words_key_without_words() -> None:
    assert "words" not in json.loads(render(TWO, "verbose_json")[0])


def test_json_keeps_non_ascii_text() -> None:
    seg = Segment(id=0, start=0, end=1, text="Grüße, 世界")
    t = dataclasses.replace(TWO, text="Grüße, 世界", segments=(seg,))
    for name in ("json", "verbose_json"):
        body = render(t, name)[0]
        assert "Grüße, 世界" in body
        assert json.loads(body)["text"] == "Grüße, 世界"
    assert "Grüße, 世界" in render(t, "srt")[0]


# -- unknown formats -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["xml", "", "SRT", "txt", "verbose-json"])
def test_unknown_format_raises_invalid_option(name: str) -> None:
    with pytest.raises(InvalidOption) as info:
        render(TWO, name)
    assert info.value.field == "format"
    with pytest.raises(InvalidOption) as info:
        check_format(name, "response_format")
    assert info.value.field == "response_format"
    assert "response_format" in info.value.message


@pytest.mark.parametrize("name", sorted(CONTENT_TYPES))
def test_check_format_accepts_known_formats(name: str) -> None:
    assert check_format(name) == name


# -- Transcript / Segment dictionaries ------------------------------------------------------
def test_segment_round_trip_without_words() -> None:
    seg = Segment(id=3, start=1.0, end=2.5, text=" hi", tokens=(1, 2, 3), temperature=0.2,
                  avg_logprob=-0.3, compression_ratio=1.4, no_speech_prob=0.05)
    data = seg.to_dict()
    assert "words" not in data
    assert data["tokens"] == [1, 2, 3]
    assert json.loads(json.dumps(data)) == data
    assert Segment.from_dict(data) == seg


def test_segment_round_trip_with_words() -> None:
    seg = rich_transcript().segments[1]
    data = json.loads(json.dumps(seg.to_dict()))
    assert data["words"] == [
        {"start": 3599.5, "end": 3600.2, "word": " Later", "probability": 0.8},
        {"start": 3600.2, "end": 3601.25, "word": " on.", "probability": 0.7},
    ]
    assert Segment.from_dict(data) == seg


def test_segment_with_empty_word_list_keeps_it() -> None:
    seg = Segment(id=0, start=0, end=1, text="", words=())
    data = json.loads(json.dumps(seg.to_dict()))
    assert data["words"] == []
    assert Segment.from_dict(data) == seg


def test_segment_from_minimal_dict_fills_defaults() -> None:
    assert Segment.from_dict({"id": "2", "start": "1", "end": 2, "text": "x"}) == Segment(
        id=2, start=1.0, end=2.0, text="x"
    )


@pytest.mark.parametrize("transcript", [TWO, rich_transcript(), WITH_BLANKS], ids=["two", "rich", "blanks"])
def test_transcript_round_trip_through_json(transcript: Transcript) -> None:
    data = json.loads(json.dumps(transcript.to_dict()))
    assert Transcript.from_dict(data) == transcript


def test_transcript_to_dict_fields() -> None:
    data = rich_transcript().to_dict()
    assert set(data) == {"text", "language", "language_probability", "duration", "task", "engine",
                         "model", "device", "segments"}
    assert data["language_probability"] == 0.98
    assert data["task"] == "translate"
    assert data["device"] == "cpu"
    assert len(data["segments"]) == 3


def test_transcript_from_minimal_dict_fills_defaults() -> None:
    t = Transcript.from_dict({"text": "x", "language": "en", "duration": 1})
    assert t == Transcript(text="x", language="en", duration=1.0)
    assert t.segments == () and t.task == "transcribe" and t.language_probability is None


# -- cue text that would break the file: arrows, blank lines, markup --------------------------
HOSTILE = Transcript(
    text="",
    language="en",
    duration=6.0,
    segments=(
        Segment(id=0, start=0.0, end=1.0, text=" He said --> 00:00:09,000 then ---> left"),
        Segment(id=1, start=1.0, end=2.0, text=" first line\n\n\n2\n00:00:05,000 --> 00:00:06,000\nforged"),
        Segment(id=2, start=2.0, end=3.0, text=" <b>bold</b> & \r\n  spaced \u2028 lines "),
        Segment(id=3, start=3.0, end=4.0, text=" last"),
    ),
)


def test_srt_cue_text_cannot_forge_a_cue_or_end_one_early() -> None:
    body = render(HOSTILE, "srt")[0]
    subs = list(srt.parse(body, ignore_errors=False))
    # Exactly the four cues, with their own times: nothing in the text was read as timing.
    assert [s.index for s in subs] == [1, 2, 3, 4]
    assert [s.start.total_seconds() for s in subs] == [0.0, 1.0, 2.0, 3.0]
    assert [s.end.total_seconds() for s in subs] == [1.0, 2.0, 3.0, 4.0]
    assert subs[0].content == "He said \u2192 00:00:09,000 then \u2192 left"
    # One line per cue: a line of digits then a time would start a cue for lenient parsers.
    assert subs[1].content == "first line 2 00:00:05,000 \u2192 00:00:06,000 forged"
    assert subs[2].content == "<b>bold</b> & spaced lines"
    assert subs[3].content == "last"
    assert "-->" not in "".join(s.content for s in subs)


def test_vtt_cue_text_is_escaped_and_has_no_blank_lines() -> None:
    body = render(HOSTILE, "vtt")[0]
    captions = list(webvtt.from_buffer(io.StringIO(body)).captions)
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:00.000", "00:00:01.000"), ("00:00:01.000", "00:00:02.000"),
        ("00:00:02.000", "00:00:03.000"), ("00:00:03.000", "00:00:04.000")]
    raw = [c.raw_text for c in captions]
    assert raw[0] == "He said --&gt; 00:00:09,000 then ---&gt; left"
    assert raw[1] == "first line\n2\n00:00:05,000 --&gt; 00:00:06,000\nforged"
    assert raw[2] == "&lt;b&gt;bold&lt;/b&gt; &amp;\nspaced\nlines"
    # Every cue's text lines are between its timing line and the blank line that ends it.
    blocks = body.split("\n\n")
    assert blocks[0] == "WEBVTT" and len(blocks) == 5
    assert all(block.count("-->") == 1 for block in blocks[1:])


def test_tsv_cue_text_stays_on_one_row() -> None:
    rows = render(HOSTILE, "tsv")[0].splitlines()
    assert len(rows) == 5
    assert all(row.count("\t") == 2 for row in rows)
    assert rows[2].split("\t")[2] == "first line 2 00:00:05,000 --> 00:00:06,000 forged"


# -- speakers ----------------------------------------------------------------------------------
DIARIZED = Transcript(
    text="Good morning. Hello. How are you?",
    language="en",
    duration=6.0,
    segments=(
        Segment(id=0, start=0.0, end=1.5, text=" Good morning.", speaker="SPEAKER_00",
                words=(Word(0.0, 0.6, " Good", 0.9, "SPEAKER_00"), Word(0.6, 1.5, " morning.", 0.9, "SPEAKER_00"))),
        Segment(id=1, start=2.0, end=3.0, text=" Hello.", speaker="SPEAKER_01",
                words=(Word(2.0, 3.0, " Hello.", 0.9, "SPEAKER_01"),)),
        Segment(id=2, start=3.2, end=5.0, text=" How are you?", speaker="SPEAKER_01"),
    ),
    speakers=(Speaker("SPEAKER_00", 1.5), Speaker("SPEAKER_01", 3.0)),
)


def test_diarized_json_formats_carry_speakers() -> None:
    body = json.loads(render(DIARIZED, "json")[0])
    assert [s["speaker"] for s in body["segments"]] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_01"]
    assert body["speakers"] == [{"id": "SPEAKER_00", "talk_time": 1.5}, {"id": "SPEAKER_01", "talk_time": 3.0}]
    verbose = json.loads(render(DIARIZED, "verbose_json")[0])
    assert [s["speaker"] for s in verbose["segments"]] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_01"]
    assert [w["speaker"] for w in verbose["words"]] == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01"]
    assert verbose["speakers"] == body["speakers"]


def test_diarized_text_starts_each_turn_with_its_speaker() -> None:
    assert render(DIARIZED, "text")[0] == "SPEAKER_00: Good morning.\nSPEAKER_01: Hello. How are you?\n"


def test_diarized_subtitles_name_the_speaker() -> None:
    cues = list(srt.parse(render(DIARIZED, "srt")[0]))
    assert [c.content for c in cues] == ["[SPEAKER_00] Good morning.", "[SPEAKER_01] Hello.",
                                         "[SPEAKER_01] How are you?"]
    captions = webvtt.read_buffer(io.StringIO(render(DIARIZED, "vtt")[0]))
    assert [(c.voice, c.text) for c in captions] == [("SPEAKER_00", "Good morning."), ("SPEAKER_01", "Hello."),
                                                     ("SPEAKER_01", "How are you?")]
    rows = render(DIARIZED, "tsv")[0].splitlines()
    assert rows[0] == "start\tend\ttext\tspeaker" and rows[2] == "2000\t3000\tHello.\tSPEAKER_01"


def test_rttm_lists_each_turn() -> None:
    body, content_type = render(DIARIZED, "rttm", file_id="my meeting")
    assert content_type == "text/plain; charset=utf-8"
    assert body.splitlines() == [
        "SPEAKER my_meeting 1 0.000 1.500 <NA> <NA> SPEAKER_00 <NA> <NA>",
        "SPEAKER my_meeting 1 2.000 1.000 <NA> <NA> SPEAKER_01 <NA> <NA>",
        "SPEAKER my_meeting 1 3.200 1.800 <NA> <NA> SPEAKER_01 <NA> <NA>",
    ]
    assert render(TWO, "rttm")[0] == ""  # no speakers, no turns


def test_diarized_json_is_openais_shape() -> None:
    body = json.loads(to_diarized_json(DIARIZED))
    assert body == {
        "task": "transcribe", "duration": 6.0, "text": "Good morning. Hello. How are you?",
        "segments": [
            {"type": "transcript.text.segment", "id": "seg_0", "start": 0.0, "end": 1.5, "text": " Good morning.",
             "speaker": "SPEAKER_00"},
            {"type": "transcript.text.segment", "id": "seg_1", "start": 2.0, "end": 3.0, "text": " Hello.",
             "speaker": "SPEAKER_01"},
            {"type": "transcript.text.segment", "id": "seg_2", "start": 3.2, "end": 5.0, "text": " How are you?",
             "speaker": "SPEAKER_01"},
        ],
    }
