"""pipeline/jobs.py: the job store on the real Redis (database 14, flushed for each test)."""

from __future__ import annotations

from pipeline.jobs import FINAL_STATES, State, new_task_id


# -- create ----------------------------------------------------------------------------------
def test_new_task_ids_are_unique_hex() -> None:
    ids = {new_task_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_final_states_come_last_in_the_order_of_state() -> None:
    order = list(State)
    assert FINAL_STATES == {State.COMPLETED, State.FAILED, State.CANCELLED}
    assert set(order[-len(FINAL_STATES):]) == FINAL_STATES
    assert [s.is_final for s in order] == [s in FINAL_STATES for s in order]
