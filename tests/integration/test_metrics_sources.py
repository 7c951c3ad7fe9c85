"""A scrape answers in time even while a source hangs: the source is reported down
(``pizzeria_metrics_source_up 0``, which an alert watches) instead of a scrape that
outlasts Prometheus' timeout and records nothing at all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform import metrics


async def _hangs(*_: object) -> float:
    await asyncio.sleep(30)
    return 0.0


async def _none(_: AsyncSession) -> float:
    return 0.0


async def _closed() -> Sequence[tuple[str, str]]:
    return [("payment", "closed")]


async def _hanging_states() -> Sequence[tuple[str, str]]:
    await asyncio.sleep(30)
    return []


def _up(source: str) -> float | None:
    return metrics.REGISTRY.get_sample_value("pizzeria_metrics_source_up", {"source": source})


async def test_a_hanging_source_is_reported_down_within_the_scrape(
    session_factory: async_sessionmaker[AsyncSession], redis: Redis
) -> None:
    await metrics.refresh_shop_gauges(session_factory, redis, ["payment"], _closed, _none, _none)
    assert (_up("redis"), _up("postgres")) == (1, 1)

    started = time.monotonic()
    await metrics.refresh_shop_gauges(
        session_factory, redis, ["payment"], _hanging_states, _hangs, _none, within=0.5
    )
    assert time.monotonic() - started < 5, "the scrape waited for the hanging sources"
    assert (_up("redis"), _up("postgres")) == (0, 0)

    await metrics.refresh_shop_gauges(session_factory, redis, ["payment"], _closed, _none, _none)
    assert (_up("redis"), _up("postgres")) == (1, 1), "up again once they answer"
