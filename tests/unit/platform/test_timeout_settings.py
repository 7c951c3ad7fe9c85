"""A timeout of 0 or less would break every connection (asyncpg refuses a non-positive
``command_timeout`` at connect; a Redis socket with timeout 0 is non-blocking): refused
at start-up, naming the variable."""

from __future__ import annotations

import pytest

from app.platform.settings import DatabaseSettings, RedisSettings


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize(
    ("variable", "settings"),
    [("DATABASE_TIMEOUT_SECONDS", DatabaseSettings), ("REDIS_TIMEOUT_SECONDS", RedisSettings)],
)
def test_a_timeout_that_is_no_time_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, settings: type, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        settings()


def test_the_timeouts_default_to_seconds_not_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("REDIS_TIMEOUT_SECONDS", raising=False)
    assert DatabaseSettings().timeout_seconds == 10.0
    assert RedisSettings().timeout_seconds == 2.0
