"""The API's own answers (no worker needed), through Flask's test client on the real Redis and RabbitMQ."""

from __future__ import annotations

import pytest

from api import create_app
from pipeline.settings import Settings


def test_a_bad_setting_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import SettingsError

    monkeypatch.setenv("CACHE_TTL_SECONDS", "an hour")
    with pytest.raises(SettingsError, match="CACHE_TTL_SECONDS"):
        create_app()


def test_a_malformed_rate_limit_stops_start_up() -> None:
    from pipeline.errors import SettingsError

    with pytest.raises(SettingsError, match="RATE_LIMIT"):
        Settings.from_env({"RATE_LIMIT": "lots"})
