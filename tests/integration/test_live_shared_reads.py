"""Many viewers of one order on one web process share one read of its view per change."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.pubsub import Broadcaster
from app.status.live import shared_read
from tests.support.inproc import place

Factory = async_sessionmaker[AsyncSession]


class CountingReads:
    """Counts, on the real engine, the statements that read an order's view and the
    transactions begun (asyncpg's own log of the ``BEGIN`` it sends)."""

    def __init__(self, factory: Factory) -> None:
        self.engine = factory.kw["bind"].sync_engine
        self.opened = 0
        self.begun = 0
        self._logged: set[Any] = set()

    def __enter__(self) -> CountingReads:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        event.listen(self.engine, "checkout", self._log_queries)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)
        event.remove(self.engine, "checkout", self._log_queries)
        for connection in self._logged:
            connection.remove_query_logger(self._queried)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM status.order_views" in statement:
            self.opened += 1

    def _log_queries(self, dbapi_connection: Any, *args: Any) -> None:
        connection = dbapi_connection._connection  # the asyncpg connection underneath
        connection.add_query_logger(self._queried)
        self._logged.add(connection)

    def _queried(self, record: Any) -> None:
        if record.query.lstrip().upper().startswith("BEGIN"):
            self.begun += 1


async def test_viewers_woken_by_one_notification_share_one_read(
    session_factory: Factory, redis: Redis, sandbox_url: str
) -> None:
    order_id = await place(session_factory)
    broadcaster = Broadcaster(redis)
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
