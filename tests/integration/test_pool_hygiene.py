"""A connection comes out of the pool outside any transaction, whatever happened to the
one before it (operator walk: PostgreSQL hung for 20 s; a ``BEGIN`` that timed out left
its connection inside a transaction nobody ended, and the orders later placed on it were
answered 201 and never committed). The shared PostgreSQL's backend of one connection is
hung here (SIGSTOP), as a hung server hangs them all."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from dataclasses import replace
from typing import Any, cast

import pytest
from sqlalchemy import Table, event, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.platform.db import create_engine, create_session_factory, utcnow
from app.platform.driver import Statement
from app.platform.outbox import InboxRow
from app.platform.settings import get_settings

_INBOX = cast(Table, InboxRow.__table__)
#: a statement on the driver (``app.platform.driver``), which begins the transaction
#: itself when it is the first: as placing an order does
_PIDS = Statement(select(func.pg_backend_pid()))
#: how long a statement may take in this test before it gives up
TIMEOUT_SECONDS = 0.5


async def _count(engine: AsyncEngine, event_id: uuid.UUID) -> int:
    """Rows committed for ``event_id``, seen from a connection of another engine."""
    async with engine.connect() as connection:
        query = select(func.count()).select_from(_INBOX).where(_INBOX.c.event_id == event_id)
        return int((await connection.execute(query)).scalar_one())


async def _backend_pid(factory: async_sessionmaker[AsyncSession]) -> int:
    async with factory() as session:
        pid = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        await session.commit()
        return pid


async def test_a_connection_whose_begin_timed_out_is_not_handed_out_again(
    migrated_db: str, engine: AsyncEngine
) -> None:
    settings = get_settings()
    settings = replace(settings, db=replace(settings.db, timeout_seconds=TIMEOUT_SECONDS))
    hurried = create_engine(settings, pool_size=1)
    factory = create_session_factory(hurried)
    event_id = uuid.uuid4()
    try:
        backend = await _backend_pid(factory)
        os.kill(backend, signal.SIGSTOP)
        try:
            async with factory() as session:
                with pytest.raises((DBAPIError, TimeoutError)):  # its BEGIN: no answer
                    await _PIDS.fetch(session, {})
        finally:
            os.kill(backend, signal.SIGCONT)  # the backend wakes and runs that BEGIN
        await asyncio.sleep(TIMEOUT_SECONDS)

        async with factory() as session:
            row = {"handler": "test.pool", "event_id": event_id, "processed_at": utcnow()}
            await session.execute(insert(_INBOX), [row])
            await session.commit()

        assert await _count(engine, event_id) == 1, "committed inside a transaction never ended"
        assert await _backend_pid(factory) != backend, "the connection left behind was reused"
    finally:
        await hurried.dispose()
        async with engine.begin() as connection:
            await connection.execute(_INBOX.delete().where(_INBOX.c.event_id == event_id))


async def test_a_connection_closed_while_idle_in_the_pool_is_replaced(migrated_db: str) -> None:
    """asyncpg aborts a connection whose cancel or close timed out (PostgreSQL hung), and
    SQLAlchemy's pool may still hold it: the next checkout must get a working one (it
    raised ``AttributeError`` on the closed one's missing protocol: a 500)."""
    pooled = create_engine(get_settings(), pool_size=1)
    returned: list[Any] = []
    event.listen(pooled.sync_engine, "checkin", lambda dbapi, _record: returned.append(dbapi))
    factory = create_session_factory(pooled)
    try:
        before = await _backend_pid(factory)
        assert returned, "the connection went back to the pool"
        for idle in returned:
            idle.driver_connection.terminate()
        assert await _backend_pid(factory) != before
    finally:
        await pooled.dispose()
