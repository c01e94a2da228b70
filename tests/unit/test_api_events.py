"""api/events.py: a listener's inbox (the hub and the job streams on Redis are in
tests/integration/test_api_events.py)."""

from __future__ import annotations

import pytest

from api import events
from api.events import Inbox, Overflowed


def test_messages_come_out_in_the_order_they_went_in() -> None:
    inbox = Inbox("wp:events:x")
    for data in ("a", None, "b"):
        inbox.put(data)
    assert [inbox.get(0), inbox.get(0), inbox.get(0)] == ["a", None, "b"]


def test_an_empty_inbox_answers_none_after_its_timeout_even_a_negative_one() -> None:
    inbox = Inbox("wp:events:x")
    assert inbox.get(0.01) is None
    assert inbox.get(-5) is None


def test_a_full_inbox_drops_what_comes_and_then_says_it_overflowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "INBOX_SIZE", 2)
    inbox = Inbox("wp:events:x")
    for data in ("a", "b", "c"):
        inbox.put(data)
    assert inbox.overflowed
    # Even what it still holds is not handed out: the listener must read the record again.
    with pytest.raises(Overflowed, match="wp:events:x"):
        inbox.get(0)
