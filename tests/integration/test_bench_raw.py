"""The bench's raw run (``pizzeria bench orders``): the placement's transaction straight
through asyncpg, against the shop's own tables. What it writes must never look like work
to the shop (its reconciler would try to charge the made-up cards) and is gone after it."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.db import asyncpg_dsn, utcnow
from app.platform.reconciler import overdue
from app.platform.settings import get_settings
from devtools.bench import (
    RAW_CUSTOMER_ID,
    bench_raw,
    place_order_one_statement,
    place_order_sql,
    raw_lines,
)
from tests.support.api import order_body

Factory = async_sessionmaker[AsyncSession]

_LEFT = """
SELECT (SELECT count(*) FROM ordering.orders WHERE customer_id = $1)
     + (SELECT count(*) FROM status.order_views WHERE customer_id = $1)
     + (SELECT count(*) FROM platform.outbox WHERE payload->>'customerId' = $2)
"""


async def _left(conn: Any) -> int:
    return int(await conn.fetchval(_LEFT, RAW_CUSTOMER_ID, str(RAW_CUSTOMER_ID)))


@pytest.mark.parametrize("one_statement", [False, True], ids=["statement by statement", "one"])
async def test_the_raw_run_is_no_work_for_the_reconciler_and_is_taken_away_after(
    session_factory: Factory, migrated_db: str, one_statement: bool
) -> None:
    dsn, lines = asyncpg_dsn(migrated_db), raw_lines(order_body())
    place = place_order_one_statement if one_statement else place_order_sql
    conn = await asyncpg.connect(dsn)
    try:
        await place(conn, lines, get_settings().shop.currency, RAW_CUSTOMER_ID)
        assert await _left(conn) == 3, "an order, its view and its event"
        event_id = await conn.fetchval(
            "SELECT id FROM platform.outbox WHERE payload->>'customerId' = $1",
            str(RAW_CUSTOMER_ID),
        )
        async with session_factory() as session:  # what the reconciler would take now
            late = await session.scalars(overdue(utcnow(), 0, 0, 1_000_000))
            assert event_id not in {row.id for row in late}, "the reconciler would take it"
            await session.rollback()

        result = await bench_raw(
            dsn, lines, concurrency=2, warmup=0, duration=0.3, one_statement=one_statement
        )
        assert result.rate > 0, "the raw run placed nothing"
        assert await _left(conn) == 0, "the raw run's rows left behind"
    finally:
        await conn.close()
