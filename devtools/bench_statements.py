"""``pizzeria bench statements``: what one statement costs in CPU, three ways.

The same one-row read (an account's standing, which every signed-in request makes) run
through ``session.execute``, through ``app.platform.driver.Statement``, and through
asyncpg alone, back to back on one connection, so the figures differ only by the layers
each way crosses: what the driver path saves per statement, on this machine. Then a
whole look-up, session and connection included, as a request makes it: in a
``read_only`` session and in a ``Lookup``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import bindparam, select

from app.accounts.models import User
from app.platform.db import create_session_factory, lookup, read_only
from app.platform.driver import Statement

#: the statement, as ``app.accounts.service.standing`` builds it
STANDING = select(User.role, User.sessions_valid_after, User.name).where(
    User.id == bindparam("user_id")
)


async def _cpu_us(run: Callable[[], Awaitable[Any]], count: int) -> float:
    """CPU microseconds per call (after a warm-up of a tenth as many)."""
    for _ in range(max(1, count // 10)):
        await run()
    began = time.process_time()
    for _ in range(count):
        await run()
    return (time.process_time() - began) / count * 1e6


async def statement_costs(database_url: str, count: int) -> dict[str, float]:
    """CPU µs per statement: through SQLAlchemy, on the driver, asyncpg alone."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
    driver_statement = Statement(STANDING)
    values = {"user_id": uuid.uuid4()}  # no such account: nothing to decode, every way alike
    factory = create_session_factory(engine)

    async def in_read_only() -> None:
        async with read_only(factory) as session:
            await driver_statement.fetchrow(session, values)

    async def in_lookup() -> None:
        async with lookup(factory) as session:
            await driver_statement.fetchrow(session, values)

    try:
        looked_up = {
            "read_only": await _cpu_us(in_read_only, count),
            "lookup": await _cpu_us(in_lookup, count),
        }
        async with read_only(factory) as session:
            connection = await session.connection()
            raw: Any = (await connection.get_raw_connection()).driver_connection
            sql = driver_statement.compiled(connection.dialect, tuple(values)).sql
            return {
                "sqlalchemy": await _cpu_us(lambda: session.execute(STANDING, values), count),
                "driver": await _cpu_us(lambda: driver_statement.fetchrow(session, values), count),
                "asyncpg": await _cpu_us(lambda: raw.fetchrow(sql, values["user_id"]), count),
            } | looked_up
    finally:
        await engine.dispose()


STATEMENT_WAYS = ("sqlalchemy", "driver", "asyncpg")


def table(costs: dict[str, float], count: int) -> str:
    labels = {
        "sqlalchemy": "session.execute (SQLAlchemy)",
        "driver": "Statement (app.platform.driver)",
        "asyncpg": "asyncpg alone",
        "read_only": "a look-up in a read_only session",
        "lookup": "a look-up in a Lookup",
    }
    lines = [f"one-row read, {count} times each way: CPU per statement"]
    lines += [f"  {labels[way]:<34} {costs[way]:7.0f} µs" for way in STATEMENT_WAYS]
    saved = costs["sqlalchemy"] - costs["driver"]
    lines.append(f"  saved on the driver                {saved:7.0f} µs per statement")
    lines.append("a look-up: session, connection and one statement, as a request makes it")
    lines += [f"  {labels[way]:<34} {costs[way]:7.0f} µs" for way in ("read_only", "lookup")]
    return "\n".join(lines)
