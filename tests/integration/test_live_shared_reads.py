"""Many viewers of one order on one web process share one read of its view per change."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.pubsub import Broadcaster
from app.status.live import shared_read
from tests.support.inproc import place
from tests.support.sent import SentStatements

Factory = async_sessionmaker[AsyncSession]


class CountingReads(SentStatements):
    """The statements that read an order's view, and the transactions begun."""

    @property
    def opened(self) -> int:
        return len(self.containing("FROM status.order_views"))

    @property
    def begun(self) -> int:
        return len(self.starting("BEGIN"))


async def test_viewers_woken_by_one_notification_share_one_read(
    session_factory: Factory, redis: Redis, sandbox_url: str
) -> None:
    order_id = await place(session_factory)
    broadcaster = Broadcaster(redis, answer_within=2.0)
    with CountingReads(session_factory) as counting:
        await _share_reads(session_factory, broadcaster, order_id, counting)


async def _share_reads(
    factory: Factory, broadcaster: Broadcaster, order_id: Any, counting: CountingReads
) -> None:
    woken_at = broadcaster.delivered
    views = await asyncio.gather(
        *(shared_read(factory, broadcaster, order_id, woken_at) for _ in range(200))
    )
    assert counting.opened == 1, "200 viewers, one read"
    assert counting.begun == 0, "a look-up: no transaction around it"
    assert all(view is not None and view.order_id == order_id for view in views)

    # a later notification: a read that began before it must not be reused
    first = asyncio.create_task(shared_read(factory, broadcaster, order_id, woken_at))
    await asyncio.sleep(0)
    broadcaster._deliver(f"order:{order_id}", "OrderPaid")
    later = await asyncio.gather(
        *(shared_read(factory, broadcaster, order_id, broadcaster.delivered) for _ in range(50))
    )
    await first
    assert counting.opened == 3, "the read begun before the notification is not shared with it"
    assert all(view is not None for view in later)
