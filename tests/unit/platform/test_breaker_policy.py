"""The breaker's pure pieces: policy validation, settings, Retry-After rounding."""

from __future__ import annotations

import pytest

from app.platform.breaker import BreakerOpen, BreakerPolicy, retry_after_seconds
from app.platform.settings import Settings


def test_policy_defaults_match_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "BREAKER_WINDOW_SIZE",
        "BREAKER_MINIMUM_CALLS",
        "BREAKER_FAILURE_RATE",
        "BREAKER_SLOW_CALL_RATE",
        "BREAKER_SLOW_CALL_SECONDS",
        "BREAKER_OPEN_SECONDS",
        "BREAKER_HALF_OPEN_CALLS",
        "BREAKER_CLOSED_LEASE_SECONDS",
    ):
        monkeypatch.delenv(var, raising=False)
    assert BreakerPolicy.from_settings(Settings()) == BreakerPolicy()


def test_policy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKER_WINDOW_SIZE", "30")
    monkeypatch.setenv("BREAKER_MINIMUM_CALLS", "5")
    monkeypatch.setenv("BREAKER_FAILURE_RATE", "40")
    monkeypatch.setenv("BREAKER_SLOW_CALL_RATE", "90.5")
    monkeypatch.setenv("BREAKER_SLOW_CALL_SECONDS", "1.5")
    monkeypatch.setenv("BREAKER_OPEN_SECONDS", "7")
    monkeypatch.setenv("BREAKER_HALF_OPEN_CALLS", "2")
    monkeypatch.setenv("BREAKER_CLOSED_LEASE_SECONDS", "0.5")
    assert BreakerPolicy.from_settings(Settings()) == BreakerPolicy(
        window_size=30,
        minimum_calls=5,
        failure_rate_threshold=40.0,
        slow_call_rate_threshold=90.5,
        slow_call_seconds=1.5,
        open_seconds=7.0,
        half_open_calls=2,
        closed_lease_seconds=0.5,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"window_size": 0},
        {"minimum_calls": 0},
        {"half_open_calls": 0},
        {"failure_rate_threshold": 0.0},
        {"slow_call_rate_threshold": 101.0},
        {"slow_call_seconds": 0.0},
        {"open_seconds": -1.0},
        {"closed_lease_seconds": -0.1},
        {"closed_lease_seconds": 15.0},
    ],
)
def test_policy_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        BreakerPolicy(**bad)  # type: ignore[arg-type]


def test_minimum_calls_is_capped_by_the_window() -> None:
    assert BreakerPolicy(window_size=5, minimum_calls=10).effective_minimum_calls == 5
    assert BreakerPolicy(window_size=20, minimum_calls=10).effective_minimum_calls == 10


@pytest.mark.parametrize(
    ("remaining_ms", "seconds"), [(1, 1), (999, 1), (1000, 1), (1001, 2), (14_200, 15), (0, 1)]
)
def test_retry_after_is_whole_seconds_rounded_up(remaining_ms: int, seconds: int) -> None:
    assert retry_after_seconds(remaining_ms) == seconds


def test_breaker_open_is_a_503_naming_the_partner() -> None:
    exc = BreakerOpen("payment", 4)
    assert (exc.status_code, exc.retry_after, exc.name) == (503, 4, "payment")
    assert "payment" in exc.detail
