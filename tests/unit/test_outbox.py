"""Webhook deliveries from the outbox (pipeline/outbox.py, pipeline/webhooks.py) on the real
Redis, delivered over HTTP to receivers on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from pipeline import webhooks
from pipeline.errors import InvalidOption


def test_retry_after_is_read_as_seconds_or_a_date_and_bounded() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert webhooks.parse_retry_after("120") == 120
    assert webhooks.parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert webhooks.parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0
    assert webhooks.parse_retry_after("soon") is None and webhooks.parse_retry_after(None) is None
    schedule = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert [webhooks.retry_delay(n, schedule) for n in range(1, 9)] == [5, 300, 1800, 7200, 18000, 36000,
                                                                        36000, 36000]
    assert webhooks.retry_delay(1, schedule, retry_after=60) == 60  # asks for longer: honoured
    assert webhooks.retry_delay(2, schedule, retry_after=60) == 300  # never sooner than scheduled
    assert webhooks.retry_delay(1, schedule, retry_after=10**9, retry_after_max=3600) == 3600


@pytest.mark.parametrize("value", ["tok\u2028en", "caf\u00e9", "a\u0007b", "\u00a0x", "tab\tok "])
def test_a_header_value_is_checked_at_submit(value: str) -> None:
    if value == "tab\tok ":
        assert webhooks.check_auth_header("X-Webhook-Token", value) == ("X-Webhook-Token", value)
        return
    with pytest.raises(InvalidOption) as refused:
        webhooks.check_auth_header("X-Webhook-Token", value)
    assert refused.value.field == "webhook_auth_header_value" and "U+" in str(refused.value)
