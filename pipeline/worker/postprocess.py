"""What happens to a transcript between the engine and anything that stores it: custom spelling,
then redaction. Applied to each engine result (a whole job's, or each chunk's) and to each
segment shown live, so that unredacted text reaches neither the result, the cache, the stored
chunks nor the live segments."""

from __future__ import annotations

from dataclasses import replace

from pipeline import redaction, spelling
from pipeline.options import TranscribeOptions
from pipeline.transcript import Segment, Transcript


def needs_words(options: TranscribeOptions) -> bool:
    """Redaction times each redacted stretch from its words; the engine is asked for them."""
    return options.redact_pii


def finish(transcript: Transcript, options: TranscribeOptions) -> Transcript:
    rules = spelling.rules_from(options.custom_spelling)
    done = spelling.apply(transcript, rules)
    if options.redact_pii:
        done = redaction.redact(done, options.redact_pii_policies, options.redact_pii_sub)
    return done


def finish_segment(segment: Segment, options: TranscribeOptions) -> Segment:
    rules = spelling.rules_from(options.custom_spelling)
    done = spelling.apply_segment(segment, rules)
    if options.redact_pii:
        done, _ = redaction.redact_segment(done, options.redact_pii_policies, options.redact_pii_sub)
    return done


def as_asked(transcript: Transcript, options: TranscribeOptions) -> Transcript:
    """Without the words the job did not ask for (computed for redaction or speakers)."""
    if options.word_timestamps or not any(s.words is not None for s in transcript.segments):
        return transcript
    return replace(transcript, segments=tuple(replace(s, words=None) for s in transcript.segments))
