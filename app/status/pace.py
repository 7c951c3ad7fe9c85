"""How fast the shop works now: each stage's spread over recent deliveries (the shop's
settings until there is history), for the delivery windows and the promise made at
payment. Its own module: the projector keeps that promise when it projects the payment,
and the read side's service estimates windows from the same figures."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.db import utcnow
from app.status import eta
from app.status.models import BoardCard

#: stage statistics are re-read at most this often per process
STATS_TTL_SECONDS = 30.0
_stats_cache: dict[str, tuple[float, eta.Stats]] = {}


async def stage_stats(session: AsyncSession, stage_minutes: dict[str, float]) -> eta.Stats:
    """Each stage's spread over recent deliveries (settings until there is history),
    cached briefly: every live page render needs it, the kitchen's pace changes slowly."""
    now = time.monotonic()
    cached = _stats_cache.get("stats")
    if cached is not None and now - cached[0] < STATS_TTL_SECONDS:
        return cached[1]
    durations = await recent_stage_durations(session)
    stats = eta.stats_from(durations, eta.fallback_stats(stage_minutes))
    _stats_cache["stats"] = (now, stats)
    return stats


async def recent_stage_durations(
    session: AsyncSession, limit: int = 100, within: timedelta = timedelta(days=14)
) -> dict[str, list[float]]:
    """Seconds each stage took in the last ``limit`` deliveries, from the stage history
    the board cards keep: the read side estimates from its own copy of the delivery
    events, and asks the delivery context nothing."""
    rows = await session.scalars(
        select(BoardCard.history)
        .where(
            BoardCard.delivered_at.is_not(None),
            BoardCard.delivered_at >= utcnow() - within,
        )
        .order_by(BoardCard.delivered_at.desc())
        .limit(limit)
    )
    durations: dict[str, list[float]] = {}
    for history in rows:
        steps = [(s["status"], datetime.fromisoformat(s["at"])) for s in history or []]
        for (stage, began), (_, ended) in itertools.pairwise(steps):
            seconds = (ended - began).total_seconds()
            if seconds >= 0:
                durations.setdefault(stage, []).append(seconds)
    return durations


def forget_stage_stats() -> None:
    """Tests: the next window is computed from the history as it is now."""
    _stats_cache.clear()
