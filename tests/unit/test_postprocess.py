"""Spelling then redaction, on whole transcripts and on live segments alike."""

from __future__ import annotations

from pipeline.options import TranscribeOptions
from pipeline.settings import Settings
from pipeline.transcript import Segment, Transcript, Word
from pipeline.worker import postprocess

SETTINGS = Settings.from_env({})


def test_spelling_runs_before_redaction_and_words_go_when_not_asked() -> None:
    options = TranscribeOptions.parse({"custom_spelling": '[{"from": ["forty two"], "to": "42"}]',
                                       "redact_pii": "true", "redact_pii_policies": "number"}, SETTINGS)
    assert postprocess.needs_words(options)
    words = (Word(0.0, 0.5, " We", 0.9), Word(0.5, 1.0, " are", 0.9), Word(1.0, 1.5, " forty", 0.9),
             Word(1.5, 2.0, " two.", 0.9))
    segment = Segment(id=0, start=0.0, end=2.0, text=" We are forty two.", words=words)
    done = postprocess.finish(Transcript(text=segment.text, language="en", duration=2.0, segments=(segment,)),
                              options)
    assert done.text == " We are [NUMBER]." and done.segments[0].text == " We are [NUMBER]."
    assert [(r.start, r.end) for r in done.redactions] == [(1.0, 2.0)]
    assert postprocess.as_asked(done, options).segments[0].words is None
    assert postprocess.finish_segment(segment, options).text == " We are [NUMBER]."


def test_nothing_asked_changes_nothing() -> None:
    options = TranscribeOptions()
    t = Transcript(text=" x", language="en", duration=1.0, segments=(Segment(id=0, start=0, end=1, text=" x"),))
    assert postprocess.finish(t, options) == t and not postprocess.needs_words(options)
