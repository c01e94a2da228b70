"""The live section's arithmetic: which speech a turn holds, and its two latencies."""

from __future__ import annotations

from typing import Any

import pytest

from bench.live import Session, latency_summary, turns


def event(kind: str, item: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "item_id": item, **fields}


def test_latencies_are_measured_from_the_speech_a_turn_holds() -> None:
    session = Session(started=100.0, events=[
        (100.2, event("input_audio_buffer.speech_started", "a", audio_start_ms=700)),
        (101.8, event("conversation.item.input_audio_transcription.delta", "a", delta="And so")),
        (102.1, event("conversation.item.input_audio_transcription.delta", "a", delta=" my")),
        (104.0, event("input_audio_buffer.speech_stopped", "a", audio_end_ms=3500)),
        (104.6, event("conversation.item.input_audio_transcription.completed", "a", transcript="And so my")),
        # A turn cut at the longest a turn may be: it starts inside the span the last one held.
        (104.7, event("input_audio_buffer.speech_started", "b", audio_start_ms=3500)),
        (105.9, event("input_audio_buffer.speech_stopped", "b", audio_end_ms=5000)),
        # Its only delta comes with the completed text: no text before it.
        (106.5, event("conversation.item.input_audio_transcription.delta", "b", delta="fellow")),
        (106.5, event("conversation.item.input_audio_transcription.completed", "b", transcript="fellow")),
        (106.6, event("input_audio_buffer.speech_started", "c", audio_start_ms=9000)),
    ])
    spans = [(1.0, 4.2)]
    rows = turns(session, spans)
    assert [r["text"] for r in rows] == ["And so my", "fellow"]  # "c" never completed
    assert rows[0]["first"] == pytest.approx(101.8 - 101.0)
    assert rows[0]["completed"] == pytest.approx(104.6 - 103.5)  # its own end, not the span's
    # No text before it completed: its first text is the completed one.
    assert rows[1]["first"] == pytest.approx(106.5 - 103.5)
    assert rows[1]["completed"] == pytest.approx(106.5 - 104.2)
    assert (rows[0]["delta"], rows[1]["delta"]) == (True, False)
    assert (rows[0]["seconds"], rows[1]["seconds"]) == (2.5, 0.7)
    summary = latency_summary(rows)
    assert summary["turns"] == 2 and summary["first_max"] == pytest.approx(3.0)
    assert summary["slowest_first"] == {"text": "fellow", "first": pytest.approx(3.0), "delta": False,
                                        "seconds": 0.7}


def test_a_turn_with_no_speech_or_no_text_has_no_latency() -> None:
    session = Session(started=0.0, events=[
        (1.0, event("input_audio_buffer.speech_started", "a", audio_start_ms=0)),
        (2.0, event("input_audio_buffer.speech_stopped", "a", audio_end_ms=900)),
        (2.5, event("conversation.item.input_audio_transcription.completed", "a", transcript="")),
    ])
    rows = turns(session, [(5.0, 6.0)])
    assert rows == [{"text": "", "first": None, "completed": None}]
    assert latency_summary(rows) == {}
