"""pipeline/speakers.py: which speaker said a word or segment, splitting segments at speaker changes, talk
times, and RTTM out and back in."""

from __future__ import annotations

from pipeline.speakers import (
    apply_speakers,
    label_words,
    parse_rttm,
    speaker_at,
    split_segment,
    talk_times,
    to_rttm,
    transcript_to_rttm,
)
from pipeline.transcript import Segment, Speaker, Transcript, Turn, Word


def word(start: float, end: float, text: str) -> Word:
    return Word(start=start, end=end, word=text, probability=0.5)


def test_a_speakers_turns_add_up_against_one_longer_turn() -> None:
    # A talks 0-1 and 2-3 (2 s in all) around B's 1-2.6 (1.6 s): A has the most of 0-3.
    turns = [Turn(1.0, 2.6, "B"), Turn(0.0, 1.0, "A"), Turn(2.0, 3.0, "A")]
    assert speaker_at(0.0, 3.0, turns) == "A"


def test_a_tie_goes_to_the_speaker_whose_turn_comes_first_in_the_list() -> None:
    assert speaker_at(1.0, 3.0, [Turn(0.0, 2.0, "A"), Turn(2.0, 4.0, "B")]) == "A"
    assert speaker_at(1.0, 3.0, [Turn(2.0, 4.0, "B"), Turn(0.0, 2.0, "A")]) == "B"


def test_label_words_sorts_the_turns_so_their_order_does_not_matter() -> None:
    words = [word(1.0, 3.0, " tie")]
    forwards = label_words(words, [Turn(0.0, 2.0, "A"), Turn(2.0, 4.0, "B")])
    backwards = label_words(words, [Turn(2.0, 4.0, "B"), Turn(0.0, 2.0, "A")])
    assert [w.speaker for w in forwards] == [w.speaker for w in backwards] == ["A"]


def test_equally_near_turns_go_to_the_one_whose_middle_is_closer() -> None:
    # 1 s from each turn's edge; A's middle is 2.5 s away, B's 3.5 s.
    assert speaker_at(3.0, 3.0, [Turn(0.0, 2.0, "B"), Turn(4.0, 5.0, "A")]) == "A"


def test_a_segment_with_three_runs_of_speakers_becomes_three_pieces_that_keep_its_ends() -> None:
    turns = [Turn(0.0, 1.0, "A"), Turn(1.0, 2.0, "B"), Turn(2.0, 3.0, "A")]
    segment = Segment(id=4, start=0.0, end=3.2, text=" a b c", tokens=(1, 2), no_speech_prob=0.1, channel=2,
                      words=(word(0.1, 0.9, " a"), word(1.1, 1.9, " b"), word(2.1, 2.9, " c")))
    pieces = split_segment(segment, turns)
    assert [(p.start, p.end, p.text, p.speaker, p.tokens) for p in pieces] == [
        (0.0, 0.9, " a", "A", ()), (1.1, 1.9, " b", "B", ()), (2.1, 3.2, " c", "A", ())]
    assert {(p.id, p.no_speech_prob, p.channel) for p in pieces} == {(4, 0.1, 2)}


def test_a_piece_never_ends_before_it_starts() -> None:
    # A zero-length last word that starts after the segment's (wrong) end.
    turns = [Turn(0.0, 1.0, "A"), Turn(1.0, 2.0, "B")]
    segment = Segment(id=0, start=0.0, end=1.0, text=" a b", words=(word(0.2, 0.8, " a"), word(1.5, 1.5, " b")))
    last = split_segment(segment, turns)[-1]
    assert (last.start, last.end, last.speaker) == (1.5, 1.5, "B")


def test_without_turns_nothing_is_labelled_and_no_speakers_are_listed() -> None:
    segment = Segment(id=3, start=0.0, end=1.0, text=" a", words=(word(0.0, 1.0, " a"),))
    out = apply_speakers(Transcript(text=" a", language="en", duration=1.0, segments=(segment,)), [])
    assert out.speakers == ()
    assert [(s.id, s.speaker) for s in out.segments] == [(0, None)]
    assert out.segments[0].words == (word(0.0, 1.0, " a"),)


def test_talk_time_is_rounded_to_milliseconds_and_ignores_empty_turns() -> None:
    turns = [Turn(0.0, 0.1, "B"), Turn(0.1, 0.2, "B"), Turn(0.0, 1.0 / 3, "A"), Turn(5.0, 4.0, "C")]
    assert talk_times(turns) == (Speaker("A", 0.333), Speaker("B", 0.2))
    assert talk_times([]) == ()


def test_rttm_names_lose_their_spaces_and_a_blank_file_id_becomes_audio() -> None:
    assert to_rttm([Turn(1.0, 1.5, "Ann Lee")], "  ") == "SPEAKER audio 1 1.000 0.500 <NA> <NA> Ann_Lee <NA> <NA>\n"
    assert to_rttm([Turn(0.0, 2.0, "A")], " board\tmeeting 2 ").startswith("SPEAKER board_meeting_2 1 0.000 2.000 ")


def test_rttm_turns_at_the_same_time_are_ordered_by_speaker() -> None:
    text = to_rttm([Turn(0.0, 1.0, "B"), Turn(0.0, 1.0, "A"), Turn(0.0, 0.5, "C")])
    assert [line.split()[7] for line in text.splitlines()] == ["C", "A", "B"]


def test_parse_rttm_reads_only_speaker_lines() -> None:
    text = ("SPKR-INFO audio 1 <NA> <NA> <NA> unknown A <NA> <NA>\n"
            "\n"
            "SPEAKER audio 1 0.100 0.200\n"  # too short to be a turn
            "SPEAKER audio 1 0.100 0.200 <NA> <NA> A <NA> <NA>\n"
            "  SPEAKER   audio 1 1.5 2.25 <NA> <NA> B\n")
    assert parse_rttm(text) == [Turn(0.1, 0.3, "A"), Turn(1.5, 3.75, "B")]


def test_a_transcripts_rttm_skips_unlabelled_segments_and_keeps_a_speakers_pauses() -> None:
    segments = (
        Segment(id=0, start=0.0, end=1.0, text=" a", speaker="A"),
        Segment(id=1, start=1.0, end=1.5, text=" ...", speaker=None),
        Segment(id=2, start=2.0, end=3.0, text=" b", speaker="A"),  # after a pause: a turn of its own
        Segment(id=3, start=2.9, end=3.4, text=" c", speaker="A"),  # overlapping the last: the same turn
    )
    transcript = Transcript(text="", language="en", duration=4.0, segments=segments)
    assert parse_rttm(transcript_to_rttm(transcript)) == [Turn(0.0, 1.0, "A"), Turn(2.0, 3.4, "A")]
