"""pipeline/queues.py: which queue each actor reads, and the message a stage sends."""

from __future__ import annotations

import json

from dramatiq.brokers.stub import StubBroker

from pipeline import queues


def test_every_actor_reads_one_of_the_queues_and_every_queue_is_read() -> None:
    assert set(queues.ACTOR_QUEUES.values()) == set(queues.QUEUES)
    assert len(set(queues.QUEUES)) == len(queues.QUEUES)
    # Chunks of a long recording are transcription work: the transcribers take them.
    assert queues.ACTOR_QUEUES[queues.CHUNK_ACTOR] == queues.ACTOR_QUEUES[queues.TRANSCRIBE_ACTOR]


def test_a_stage_message_goes_to_its_actors_queue_and_carries_only_the_task_id() -> None:
    broker = StubBroker()
    for queue in queues.QUEUES:
        broker.declare_queue(queue)
    for actor, queue in queues.ACTOR_QUEUES.items():
        message = queues.send(broker, actor, "task-1")
        assert (message.queue_name, message.actor_name, message.args) == (queue, actor, ("task-1",))
        # JSON-safe and idempotent to redeliver: the id is all a stage needs to find its job.
        assert json.loads(message.encode())["args"] == ["task-1"]
    assert {q: broker.queues[q].qsize() for q in queues.QUEUES} == {
        q: sum(1 for v in queues.ACTOR_QUEUES.values() if v == q) for q in queues.QUEUES
    }
