"""Spelling then redaction, on whole transcripts and on live segments alike."""

from __future__ import annotations

import json
from typing import Any

from pipeline.options import TranscribeOptions
from tests.support.helpers import FIXTURES, says_number


def test_live_segments_and_the_stored_result_are_redacted_in_the_stages(ctx: Any) -> None:
    """The real stages in-process on a recording that says a number: every segment published
    while decoding, the stored result and the cache entry hold [NUMBER], never the digits."""
    from pipeline.jobs import events_channel, job_key
    from pipeline.worker import stages
    from tests.support.jobs import submit

    options = TranscribeOptions.parse({"redact_pii": "true", "redact_pii_policies": "number",
                                       "redact_pii_audio": "true"}, ctx.settings)
    task_id = submit(ctx, FIXTURES / "speech_number.wav", options)
    listener = ctx.redis.pubsub()
    listener.subscribe(events_channel(task_id))
    try:
        assert stages.extract(ctx, task_id) is stages.Next.TRANSCRIBE
        assert stages.transcribe(ctx, task_id) is stages.Next.NOTIFY
        published = []
        while (message := listener.get_message(timeout=0.5)) is not None:
            if message["type"] == "message":
                published.append(json.loads(message["data"]))
    finally:
        listener.close()
    segments = [e["segment"] for e in published if e.get("type") == "segment"]
    assert segments and any("[NUMBER]" in s["text"] for s in segments)
    assert not any(says_number(s["text"]) or s.get("tokens") for s in segments)
    stored = str(ctx.redis.get(f"{job_key(task_id)}:result"))
    assert "[NUMBER]" in stored and not says_number(stored)
    result = ctx.jobs.result(task_id)
    assert result is not None and result.redactions and all(s.words is None for s in result.segments)
    cached = ctx.cache.get(ctx.jobs.get(task_id).cache_input, options)
    assert cached is not None and cached.text == result.text
    assert all(s.tokens == () for s in cached.segments)
    wav = ctx.jobs.redacted_audio(task_id)
    assert wav is not None and wav[:4] == b"RIFF"
