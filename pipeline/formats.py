"""Render a transcript in the formats clients download.

These are written here rather than borrowed from openai-whisper's writers because those live
in a package that imports torch, and the web process must stay small; the tests check every
format with an independent parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pipeline.captions import Cue
from pipeline.errors import InvalidOption
from pipeline.speakers import transcript_to_rttm
from pipeline.transcript import Segment, Transcript

_ARROW = re.compile(r"-[ -]*>")


def _timestamp(seconds: float, separator: str, *, always_hours: bool = True) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(transcript: Transcript) -> list[Segment]:
    # Subtitle players choke on empty cues; whitespace-only segments carry nothing to show.
    return [s for s in transcript.segments if s.text.strip()]


def _cue_text(text: str) -> str:
    """A cue's text as lines with something on each: a blank line ends a cue in SRT and VTT, so
    one inside the text would cut the cue there and turn the rest into a malformed block."""
    lines = (line.strip() for line in text.strip().splitlines())
    return "\n".join(line for line in lines if line)


def _srt_text(text: str) -> str:
    # SRT has no escapes, and lenient parsers take a line of digits followed by a line that
    # starts with a time for the next cue even without the blank line, and read "->" or
    # "- ->" as the arrow: a cue's text goes on one line, its arrows written "→".
    return _ARROW.sub("\u2192", " ".join(text.split()))


def _vtt_text(text: str) -> str:
    # WebVTT cue text is markup: "<" opens a tag, "&" an entity, and "-->" may not appear.
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _cue_text(escaped)


def _with_speaker(item: dict[str, Any], speaker: str | None, channel: int | None = None) -> dict[str, Any]:
    # Only a diarized (multichannel) transcript has speakers (channels); without them every
    # shape is what it always was.
    if speaker is not None:
        item["speaker"] = speaker
    if channel is not None:
        item["channel"] = channel
    return item


def label(speaker: str | None, channel: int | None) -> str | None:
    """Who a turn belongs to, in text and subtitles: the speaker, else the channel."""
    if speaker is not None:
        return speaker
    return None if channel is None else f"Channel {channel}"


def _label(s: Segment) -> str | None:
    return label(s.speaker, s.channel)


def _speakers(t: Transcript, body: dict[str, Any]) -> dict[str, Any]:
    if t.speakers:
        body["speakers"] = [s.to_dict() for s in t.speakers]
    if t.channels:
        body["channels"] = list(t.channels)
    if t.redactions:
        body["redactions"] = [r.to_dict() for r in t.redactions]
    return body


def _warnings(t: Transcript, body: dict[str, Any]) -> dict[str, Any]:
    if t.warnings:
        body["warnings"] = list(t.warnings)
    return body


def _turns(t: Transcript) -> list[tuple[str | None, list[Segment]]]:
    """Runs of consecutive cues with the same speaker (or channel)."""
    runs: list[tuple[str | None, list[Segment]]] = []
    for segment in _cues(t):
        if runs and runs[-1][0] == _label(segment):
            runs[-1][1].append(segment)
        else:
            runs.append((_label(segment), [segment]))
    return runs


def to_json(t: Transcript) -> str:
    return json.dumps(
        _warnings(t, _speakers(t, {
            "text": t.text,
            "language": t.language,
            "duration": t.duration,
            "segments": [
                _with_speaker({"id": s.id, "start": s.start, "end": s.end, "text": s.text}, s.speaker, s.channel)
                for s in t.segments
            ],
        })),
        ensure_ascii=False,
    )


def to_verbose_json(t: Transcript) -> str:
    """The shape OpenAI's clients read for ``response_format=verbose_json``."""
    body: dict[str, object] = {
        "task": t.task,
        "language": t.language,
        "duration": t.duration,
        "text": t.text,
        "segments": [
            _with_speaker({
                "id": s.id,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": list(s.tokens),
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }, s.speaker, s.channel)
            for s in t.segments
        ],
    }
    words = [w for s in t.segments for w in (s.words or ())]
    if words:
        body["words"] = [_with_speaker({"word": w.word, "start": w.start, "end": w.end}, w.speaker, w.channel)
                         for w in words]
    return json.dumps(_warnings(t, _speakers(t, body)), ensure_ascii=False)


def to_diarized_json(t: Transcript) -> str:
    """OpenAI's ``response_format=diarized_json``: the text, and segments labelled with their
    speaker (ours are named SPEAKER_00, SPEAKER_01, ... as in every other format)."""
    return json.dumps({
        "task": "transcribe",
        "duration": t.duration,
        "text": t.text,
        "segments": [
            {"type": "transcript.text.segment", "id": f"seg_{s.id}", "start": s.start, "end": s.end,
             "text": s.text, "speaker": s.speaker or "unknown"}
            for s in t.segments
        ],
    }, ensure_ascii=False)


def to_text(t: Transcript) -> str:
    if not any(_label(s) for s in t.segments):
        return t.text.strip() + "\n"
    # One paragraph per turn, led by who speaks.
    paragraphs = [
        f"{speaker or 'unknown'}: {' '.join(' '.join(s.text.split()) for s in cues)}"
        for speaker, cues in _turns(t)
    ]
    return "\n".join(paragraphs) + "\n"


def _as_cues(t: Transcript) -> list[Cue]:
    return [Cue(s.start, s.end, (s.text,), s.speaker, s.channel) for s in _cues(t)]


def to_srt(t: Transcript, cues: list[Cue] | None = None) -> str:
    # A re-flowed cue's lines (pipeline.captions) stay lines; a segment's text is one line.
    blocks = [
        f"{n}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{_srt_speaker(c)}"
        + "\n".join(_srt_text(line) for line in c.lines) + "\n"
        for n, c in enumerate(_as_cues(t) if cues is None else cues, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(t: Transcript, cues: list[Cue] | None = None) -> str:
    blocks = [
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{_vtt_voice(c)}"
        + "\n".join(_vtt_text(line) for line in c.lines) + "\n"
        for c in (_as_cues(t) if cues is None else cues)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _srt_speaker(c: Cue) -> str:
    who = label(c.speaker, c.channel)
    return f"[{who}] " if who else ""


def _vtt_voice(c: Cue) -> str:
    # A voice span's annotation runs to the ">": none may be inside it.
    who = label(c.speaker, c.channel)
    if not who:
        return ""
    return "<v " + " ".join(who.replace("&", "&amp;").replace(">", "&gt;").split()) + ">"


def to_tsv(t: Transcript) -> str:
    # Integer milliseconds, as openai-whisper's TSV writer does, so tools that read one read ours;
    # a diarized transcript adds a last column.
    diarized = any(_label(s) for s in t.segments)
    rows = ["start\tend\ttext" + ("\tspeaker" if diarized else "")]
    rows += [
        f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{' '.join(s.text.split())}"
        + (f"\t{_label(s) or ''}" if diarized else "")
        for s in _cues(t)
    ]
    return "\n".join(rows) + "\n"


def to_rttm(t: Transcript, file_id: str = "audio") -> str:
    """NIST RTTM, one SPEAKER line per speaker turn; empty when nobody speaks."""
    return transcript_to_rttm(t, file_id)


FORMATS: dict[str, tuple[Callable[[Transcript], str], str]] = {
    "json": (to_json, "application/json"),
    "verbose_json": (to_verbose_json, "application/json"),
    "text": (to_text, "text/plain; charset=utf-8"),
    "srt": (to_srt, "application/x-subrip; charset=utf-8"),
    "vtt": (to_vtt, "text/vtt; charset=utf-8"),
    "tsv": (to_tsv, "text/tab-separated-values; charset=utf-8"),
    # RTTM has no registered media type; plain text shows in a browser and saves as it is.
    "rttm": (to_rttm, "text/plain; charset=utf-8"),
}


def check_format(name: str, field: str = "format") -> str:
    if name not in FORMATS:
        raise InvalidOption(f"{field} must be one of {', '.join(FORMATS)}, not {name!r}", field=field)
    return name


def render(transcript: Transcript, name: str, *, file_id: str = "audio",
           cues: list[Cue] | None = None) -> tuple[str, str]:
    """Return (body, content type) for format ``name``; ``file_id`` names the recording in RTTM;
    ``cues``: re-flowed subtitle cues (pipeline.captions) for srt and vtt."""
    writer, content_type = FORMATS[check_format(name)]
    if writer is to_rttm:
        return to_rttm(transcript, file_id), content_type
    if name == "srt":
        return to_srt(transcript, cues), content_type
    if name == "vtt":
        return to_vtt(transcript, cues), content_type
    return writer(transcript), content_type
