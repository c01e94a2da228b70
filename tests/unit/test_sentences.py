"""Sentences and paragraphs from a transcript's words."""

from __future__ import annotations

from pipeline.sentences import paragraphs, sentences
from pipeline.transcript import Segment, Transcript, Word


def test_sentences_from_estimated_words_without_word_timestamps() -> None:
    t = Transcript(text="", language="en", duration=10.0, segments=(
        Segment(id=0, start=0.0, end=4.0, text=" Hello there. How are"),
        Segment(id=1, start=4.0, end=6.0, text=" you? Fine!"),
    ))
    found = sentences(t)
    assert [s["text"] for s in found] == ["Hello there.", "How are you?", "Fine!"]
    assert found[0]["start"] == 0.0 and 0 < found[0]["end"] < found[1]["start"] + 1e-9
    assert found[1]["end"] < found[2]["end"] == 6.0
    assert all("words" not in s and "speaker" not in s for s in found)


def test_speaker_changes_end_sentences_and_paragraphs_and_pauses_end_paragraphs() -> None:
    def w(start: float, text: str, speaker: str) -> Word:
        return Word(start, start + 0.4, text, 0.9, speaker=speaker)

    words = (w(0.0, " One", "A"), w(0.5, " two.", "A"), w(1.0, " Three", "A"), w(1.5, " four", "B"),
             w(5.0, " Five.", "B"), w(5.5, " Six.", "B"))
    t = Transcript(text="", language="en", duration=6.0, segments=(
        Segment(id=0, start=0.0, end=6.0, text="".join(x.word for x in words), words=words),))
    found = sentences(t)
    assert [(s["text"], s["speaker"]) for s in found] == [
        ("One two.", "A"), ("Three", "A"), ("four Five.", "B"), ("Six.", "B")]
    assert found[0]["words"] == [{"word": "One", "start": 0.0, "end": 0.4}, {"word": "two.", "start": 0.5, "end": 0.9}]
    paras = paragraphs(t)
    assert [p["text"] for p in paras] == ["One two. Three", "four Five. Six."]


def test_channels_are_split_apart_and_shown() -> None:
    t = Transcript(text="", language="en", duration=4.0, channels=(1, 2), segments=(
        Segment(id=0, start=0.0, end=3.0, text=" Left speaks", channel=1),
        Segment(id=1, start=0.5, end=2.0, text=" right. Too", channel=2),
        Segment(id=2, start=3.0, end=4.0, text=" long.", channel=1),
    ))
    assert [(s["text"], s["channel"]) for s in sentences(t)] == [
        ("Left speaks long.", 1), ("right.", 2), ("Too", 2)]
