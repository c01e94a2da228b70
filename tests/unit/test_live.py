"""The parts of live transcription that need no stack: the audio conversion, the session's
configuration, the stable-prefix policy, the streamed VAD and a session fed from a real Redis."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.live import ALAW, ULAW, Converter
from pipeline.media import decode_audio
from pipeline.worker import live as livework


def test_g711_decodes_to_the_standard_values() -> None:
    # ITU-T G.711's tables at a few known codes.
    assert (ULAW[0xFF], ULAW[0x7F], ULAW[0x00], ULAW[0x80]) == (0, 0, -32124, 32124)
    assert (ALAW[0xD5], ALAW[0x55], ALAW[0xAA], ALAW[0x2A]) == (8, -8, 32256, -32256)
    out = Converter("audio/pcmu", 8_000).convert(bytes([0x80] * 80))
    assert len(out) == 160 * 2  # 8 kHz doubled to 16 kHz


def test_agreement_sends_only_what_two_decodes_share_and_never_takes_back() -> None:
    agreement = livework.Agreement()
    assert agreement.update("And so") == ""
    assert agreement.update("And so my fellow") == "And so"
    assert agreement.update("And so, my fellow Americans") == " my fellow"
    assert agreement.update("And sew my") == ""  # disagrees with what was sent: nothing more
    assert agreement.update("And so my fellow Americans ask") == ""
    assert agreement.update("And so my fellow Americans ask not") == " Americans ask"
    assert agreement.finish("And so my fellow Americans, ask not.") == " not."
    assert agreement.sent == "And so my fellow Americans ask not.".split()


def test_agreement_goes_on_after_a_word_added_or_dropped_before_what_was_sent() -> None:
    agreement = livework.Agreement()
    agreement.update("actually just")
    assert agreement.update("actually just stay") == "actually just"
    # Two decodes now hear a word before it: the deltas go on after "actually just".
    assert agreement.update("Oh actually just stay here") == ""
    assert agreement.update("Oh actually just stay here and close") == " stay here"
    # Two that drop a word inside it: found again by its last two words.
    assert agreement.update("Oh just stay here and close your") == ""
    assert agreement.update("Oh just stay here and close your documents") == " and close your"
    assert agreement.finish("Oh, actually, just stay here and close your documents.") == " documents."
    assert agreement.sent == "actually just stay here and close your documents.".split()


def test_agreement_stops_where_the_words_sent_are_not_found_again() -> None:
    agreement = livework.Agreement()
    agreement.update("they will")
    assert agreement.update("they will go") == "they will"
    assert agreement.update("Well, they've only just") == ""
    assert agreement.update("Well, they've only just started") == ""
    assert agreement.finish("Well, they've only just started realizing.") == ""
    assert agreement.sent == ["they", "will"]


def test_a_loop_is_cut_where_four_words_come_round_again() -> None:
    looped = "And so my fellow American. And so my fellow American. And".split()
    assert livework.repeat_cut(looped) == "And so my fellow American.".split()
    # Case and punctuation do not hide a repeat; three words coming back are speech, not a loop.
    again = "ask not, what you can do; Ask not what you".split()
    assert livework.repeat_cut(again) == "ask not, what you can do;".split()
    speech = "what your country can do for you ask what you can do for your country".split()
    assert livework.repeat_cut(speech) == speech
    assert livework.repeat_cut([]) == []


def test_the_streamed_vad_matches_one_pass(jfk: Path) -> None:
    from faster_whisper.vad import get_vad_model

    audio = decode_audio(jfk)
    whole = len(audio) - len(audio) % livework.WINDOW
    once = get_vad_model()(audio[:whole]).reshape(-1)
    vad = livework.StreamingVad()
    streamed = np.concatenate([vad.feed(audio[i:i + 1234]) for i in range(0, len(audio), 1234)])
    assert np.allclose(streamed[:len(once)], once, atol=1e-5)
