"""The small metric hooks: job outcomes, partner call timing, the metrics token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arq import Retry

from app.platform import metrics


def jobs(task: str, outcome: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("pizzeria_jobs_total", {"task": task, "outcome": outcome})
        or 0.0
    )


@pytest.mark.parametrize(
    ("returns", "raises", "outcome"),
    [
        ("done", None, "ok"),
        ("dead-lettered", None, "dead_letter"),
        (None, Retry(defer=1), "retry"),
        (None, ValueError("bug"), "error"),
        (None, asyncio.CancelledError(), "cancelled"),
    ],
)
async def test_every_job_run_is_counted_by_outcome(
    returns: str | None, raises: BaseException | None, outcome: str
) -> None:
    async def task(ctx: dict[str, Any], raw: dict[str, Any]) -> str | None:
        if raises is not None:
            raise raises
        return returns

    name = f"test.{outcome}"
    before = jobs(name, outcome)
    counted = metrics.counted_job(name, task)
    if raises is None:
        assert await counted({}, {}) == returns
    else:
        with pytest.raises(type(raises)):
            await counted({}, {})
    assert jobs(name, outcome) == before + 1


def test_a_partner_call_is_timed_even_when_it_fails() -> None:
    labels = {"partner": "test", "operation": "explode"}
    before = metrics.REGISTRY.get_sample_value("pizzeria_partner_call_seconds_count", labels)
    with pytest.raises(TimeoutError), metrics.timed_partner_call("test", "explode"):
        raise TimeoutError
    after = metrics.REGISTRY.get_sample_value("pizzeria_partner_call_seconds_count", labels)
    assert after == (before or 0) + 1


@pytest.mark.parametrize(
    ("header", "token", "allowed"),
    [
        (None, "", True),
        ("Bearer whatever", "", True),
        (None, "s3cret-token", False),
        ("Bearer wrong", "s3cret-token", False),
        ("Basic s3cret-token", "s3cret-token", False),
        ("Bearer s3cret-token", "s3cret-token", True),
        ("bearer s3cret-token", "s3cret-token", True),
    ],
)
def test_the_metrics_token(header: str | None, token: str, allowed: bool) -> None:
    assert metrics.authorized(header, token) is allowed
