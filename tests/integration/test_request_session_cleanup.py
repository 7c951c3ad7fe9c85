"""The request's database session ends cleanly even when PostgreSQL has just gone away
(issue 9, found by the chaos suite: a staff move answered 500 in the combined run).

A handler that read inside a transaction and then refused the request (409, 404, ...)
leaves its session to ``deps.provide_db``, which rolls the transaction back. When the
connection died in between (PostgreSQL stopped: every backend terminated), that rollback
raised a second error; Litestar gathered it into an ``ExceptionGroup`` that no handler
knew: 500. The transaction died with its connection, so the handler's own answer stands.
Real PostgreSQL: the handler's backend is terminated as a fast shutdown does."""

from __future__ import annotations

import asyncpg
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.platform import deps, web
from app.platform.db import asyncpg_dsn, create_session_factory
from app.platform.errors import Conflict, DomainError
from app.platform.i18n import N_
from app.platform.settings import get_settings


async def _terminate(session: AsyncSession, dsn: str) -> None:
    """Read in a transaction, then lose the connection as in a PostgreSQL fast shutdown."""
    pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


def _app(database_url: str) -> Litestar:
    """A Litestar app with the web's own session dependency and error handlers, on a
    one-connection pool of its own (made in the app's event loop)."""
    dsn = asyncpg_dsn(database_url)

    async def start(app: Litestar) -> None:
        app.state.engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
        app.state.session_factory = create_session_factory(app.state.engine)

    async def stop(app: Litestar) -> None:
        await app.state.engine.dispose()

    @get("/api/refused", opt={"access": "public"})
    async def refused(db: NamedDependency[AsyncSession]) -> None:
        await _terminate(db, dsn)
        raise Conflict(N_("This delivery was already moved."))

    @get("/api/read", opt={"access": "public"})
    async def read(db: NamedDependency[AsyncSession]) -> dict[str, str]:
        await _terminate(db, dsn)
        return {"read": "done"}

    @get("/api/again", opt={"access": "public"})
    async def again(db: NamedDependency[AsyncSession]) -> dict[str, int]:
        return {"one": (await db.execute(text("SELECT 1"))).scalar_one()}

    return Litestar(
        route_handlers=[refused, read, again],
        dependencies={"db": Provide(deps.provide_db)},
        state=State({"settings": get_settings()}),
        on_startup=[start],
        on_shutdown=[stop],
        exception_handlers={
            DomainError: web.domain_error_handler,
            Exception: web.internal_error_handler,
        },
    )


JSON = {"accept": "application/json"}


async def test_a_refusal_stays_a_refusal_when_the_connection_died_before_the_rollback(
    migrated_db: str,
) -> None:
    async with AsyncTestClient(app=_app(migrated_db)) as client:
        response = await client.get("/api/refused", headers=JSON)
        assert response.status_code == 409, response.text
        assert "already moved" in response.text
        # the dead connection left the pool: the next request gets a live one
        again = await client.get("/api/again", headers=JSON)
        assert (again.status_code, again.json()) == (200, {"one": 1})


async def test_an_answer_stands_when_the_connection_died_after_the_read(
    migrated_db: str,
) -> None:
    async with AsyncTestClient(app=_app(migrated_db)) as client:
        response = await client.get("/api/read", headers=JSON)
        assert response.status_code == 200, response.text
        assert response.json() == {"read": "done"}
