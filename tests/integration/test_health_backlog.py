"""``/health``'s overdue events: only what the reconciler has had its look at and still
found unfinished, not every healthy event waiting for that look (a steady 1 to 3)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.operations.health import event_backlog
from app.platform.db import utcnow
from app.platform.outbox import OutboxRow
from app.platform.settings import get_settings


def _published(seconds_ago: float) -> OutboxRow:
    now = utcnow()
    return OutboxRow(
        id=uuid.uuid4(),
        type="HealthCheckProbe",
        aggregate_type="test",
        aggregate_id="health",
        correlation_id="health",
        causation_id=None,
        occurred_at=now,
        payload={},
        published_at=now - timedelta(seconds=seconds_ago),
        enqueued_at=now,  # the shop's own reconciler leaves them alone meanwhile
    )


async def test_an_event_waiting_for_the_reconcilers_look_is_not_overdue(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    settings = get_settings()
    pipeline = settings.pipeline
    waiting = _published(pipeline.redeliver_seconds + 1)  # its first look is still to come
    stuck = _published(pipeline.redeliver_seconds + 3 * pipeline.reconcile_seconds)
    async with session_factory() as session:
        before = (await event_backlog(session, settings))["overdue"]
        session.add_all([waiting, stuck])
        await session.commit()
        try:
            after = (await event_backlog(session, settings))["overdue"]
        finally:
            await session.execute(delete(OutboxRow).where(OutboxRow.type == "HealthCheckProbe"))
            await session.commit()
    assert after - before == 1
