"""Queue and actor names, which queue each actor reads, and sending a stage's message: a
leaf that the web process, the workers and the tests share."""

from __future__ import annotations

import dramatiq

EXTRACT_QUEUE = "extract"
TRANSCRIBE_QUEUE = "transcribe"
DIARIZE_QUEUE = "diarize"  # who spoke when, beside transcribe: a CPU host can serve it alone
NOTIFY_QUEUE = "notify"
# Realtime sessions: a worker takes one and keeps it to its end (its audio comes through Redis).
LIVE_QUEUE = "live"
QUEUES = (EXTRACT_QUEUE, TRANSCRIBE_QUEUE, DIARIZE_QUEUE, NOTIFY_QUEUE, LIVE_QUEUE)

EXTRACT_ACTOR = "extract_audio"
TRANSCRIBE_ACTOR = "transcribe_audio"
CHUNK_ACTOR = "transcribe_chunk"
DIARIZE_ACTOR = "diarize_audio"
NOTIFY_ACTOR = "notify_webhook"
LIVE_ACTOR = "live_session"

ACTOR_QUEUES = {
    EXTRACT_ACTOR: EXTRACT_QUEUE,
    TRANSCRIBE_ACTOR: TRANSCRIBE_QUEUE,
    CHUNK_ACTOR: TRANSCRIBE_QUEUE,
    DIARIZE_ACTOR: DIARIZE_QUEUE,
    NOTIFY_ACTOR: NOTIFY_QUEUE,
    LIVE_ACTOR: LIVE_QUEUE,
}


def send(broker: dramatiq.Broker, actor_name: str, task_id: str) -> dramatiq.Message[None]:
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=ACTOR_QUEUES[actor_name],
        actor_name=actor_name,
        args=(task_id,),
        kwargs={},
        options={},
    )
    return broker.enqueue(message)
