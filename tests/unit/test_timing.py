"""pipeline/timing.py: words with times for every segment, decoded ones where there are any, else the
segment's time spread over its words by length."""

from __future__ import annotations

from pipeline.timing import TimedWord, estimate_words, has_word_timestamps, segment_words, timed_words
from pipeline.transcript import Segment, Transcript, Word


def test_a_segments_time_is_spread_by_characters_with_the_leading_space() -> None:
    # " a" is 2 characters and " bbb" 4: a third and two thirds of the 3 seconds.
    words = estimate_words(Segment(id=0, start=10.0, end=13.0, text=" a bbb", speaker="S1", channel=2))
    assert words == (Word(start=10.0, end=11.0, word=" a", probability=0.0, speaker="S1", channel=2),
                     Word(start=11.0, end=13.0, word=" bbb", probability=0.0, speaker="S1", channel=2))


def test_estimated_times_are_rounded_to_milliseconds_and_meet_end_to_end() -> None:
    words = estimate_words(Segment(id=0, start=0.0, end=1.0, text=" one two three"))
    assert [w.word for w in words] == [" one", " two", " three"]
    assert [(w.start, w.end) for w in words] == [(0.0, 0.286), (0.286, 0.571), (0.571, 1.0)]


def test_text_with_no_words_has_no_estimated_words() -> None:
    assert estimate_words(Segment(id=0, start=0.0, end=1.0, text="")) == ()
    assert estimate_words(Segment(id=0, start=0.0, end=1.0, text=" \n\t ")) == ()


def test_a_segment_that_ends_before_it_starts_puts_every_word_at_its_start() -> None:
    words = estimate_words(Segment(id=0, start=5.0, end=4.0, text=" a b"))
    assert [(w.start, w.end) for w in words] == [(5.0, 5.0), (5.0, 5.0)]


def test_decoded_words_win_and_an_empty_word_list_is_estimated() -> None:
    decoded = (Word(start=0.2, end=0.4, word=" hi", probability=0.9),)
    assert segment_words(Segment(id=0, start=0.0, end=1.0, text=" hi", words=decoded)) == (decoded, False)
    words, estimated = segment_words(Segment(id=0, start=0.0, end=1.0, text=" hi", words=()))
    assert estimated and [(w.word, w.start, w.end) for w in words] == [(" hi", 0.0, 1.0)]


def test_timed_words_take_the_segments_speaker_and_channel_where_the_word_has_none() -> None:
    transcript = Transcript(text="", language="en", duration=3.0, segments=(
        Segment(id=7, start=0.0, end=1.0, text=" a b", speaker="S1", channel=1, words=(
            Word(start=0.0, end=0.5, word=" a", probability=0.9),
            Word(start=0.5, end=0.6, word="  ", probability=0.1),  # blank: not a word
            Word(start=0.6, end=1.0, word=" b", probability=0.9, speaker="S2", channel=2))),
        Segment(id=8, start=2.0, end=3.0, text=" c"),
    ))
    assert list(timed_words(transcript)) == [
        TimedWord(" a", 0.0, 0.5, "S1", 1, segment=7, estimated=False),
        TimedWord(" b", 0.6, 1.0, "S2", 2, segment=7, estimated=False),
        TimedWord(" c", 2.0, 3.0, None, None, segment=8, estimated=True),
    ]


def test_a_transcript_has_word_timestamps_when_any_segment_has_words() -> None:
    plain = Segment(id=0, start=0.0, end=1.0, text=" a")
    timed = Segment(id=1, start=1.0, end=2.0, text=" b", words=(Word(1.0, 2.0, " b", 0.9),))
    empty = Segment(id=2, start=2.0, end=3.0, text="", words=())
    assert has_word_timestamps(Transcript(text="", language="en", duration=2.0, segments=(plain, timed)))
    assert not has_word_timestamps(Transcript(text="", language="en", duration=3.0, segments=(plain, empty)))
    assert not has_word_timestamps(Transcript(text="", language="en", duration=0.0))
