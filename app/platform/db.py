"""Database engine, sessions and the declarative base shared by every context.

Each context owns one PostgreSQL schema; its models say so with ``__table_args__``.
Services commit explicitly: a use case that moves money or state decides where its
transaction ends, not a framework hook.
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import MetaData, event
from sqlalchemy.exc import DisconnectionError, IntegrityError, InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import greenlet_spawn

from app.platform import logs, priority
from app.platform.settings import Settings

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


#: the relay's pool size (it reads and marks the outbox in a few statements at a time)
RELAY_POOL_SIZE = 2


def pool_capacity(size: int) -> int:
    """The most connections a pool of ``size`` (``DATABASE_POOL_SIZE``, ``WORKER_DB_POOL``)
    holds: twice the size, none beyond (``create_engine``)."""
    return 2 * size


def create_engine(
    settings: Settings, pool_size: int | None = None, *, direct: bool = False
) -> AsyncEngine:
    """An engine with a bounded pool. Every process has one, so the sizes must add up to
    less than PostgreSQL's ``max_connections`` (100 by default; the embedded one of
    ``pizzeria up`` takes 200): each web process 2 x 10 (``up`` runs one per CPU, at most
    two), relay 2 x 2, each worker 2 x ``WORKER_DB_POOL`` (2 x 4 by default). With many
    replicas, put PgBouncer in front (``DATABASE_POOLING=transaction``): the pools then
    hold cheap client connections. ``direct``: straight to PostgreSQL (migrations).

    All of them are kept once opened (no overflow): an overflow connection is closed as
    soon as it is returned to a full pool, so under a load a little above the pool size
    every request or job paid for a new connection and prepared every statement again
    (its statement cache starts empty); the profile showed ``prepare`` in 6 % of the
    web's CPU. Idle connections are opened only on demand and recycled after 30 min.
    Every connect and statement gives up after ``DATABASE_TIMEOUT_SECONDS`` (asyncpg's
    ``TimeoutError``: a 503, ``app.platform.web.database_unavailable``; a request may wait
    up to about twice that, when its rollback waits for the server too), except on the
    ``direct`` engine of migrations.

    Each connection carries the part's name as its ``application_name``, so an operator
    reading ``pg_stat_activity`` (or PostgreSQL's log) sees which part holds a
    connection, runs a slow statement or sits idle in a transaction."""
    size = pool_size or settings.db.pool_size
    url = settings.db.direct_url if direct else settings.db.url
    pooled = settings.db.pooling == "transaction" and not direct
    connect_args = transaction_pooling_args() if pooled else {}
    connect_args["server_settings"] = {"application_name": application_name()}
    if not direct:
        timeout = settings.db.timeout_seconds
        connect_args |= {"timeout": timeout, "command_timeout": timeout}
    engine = create_async_engine(
        url,
        connect_args=connect_args,
        pool_size=pool_capacity(size),
        max_overflow=0,
        # No pre-ping (a round trip per checkout, a quarter of a request's time): a
        # connection that died is invalidated when it fails, and that request answers
        # 503 with Retry-After (see app.platform.web) instead of a 500.
        pool_recycle=1800,
        echo=settings.db.echo,
        # read by ``read_only``: behind PgBouncer a statement outside a transaction may
        # be prepared on one server connection and run on another
        execution_options={TRANSACTION_POOLED: pooled},
        json_serializer=encode_json,
        json_deserializer=msgspec.json.decode,
    )
    event.listen(engine.sync_engine, "checkout", _refuse_a_spoilt_connection)
    if priority.niceness() > 0:  # a background part: its backends yield to the web's too
        event.listen(engine.sync_engine, "connect", _pass_on_niceness)
    return engine


def _refuse_a_spoilt_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """SQLAlchemy's ``checkout`` hook: a connection handed out must be open and outside
    any transaction. asyncpg marks a transaction as the connection's own before its
    ``BEGIN`` is answered and keeps the mark when that ``BEGIN`` times out (PostgreSQL
    hung; it ran the ``BEGIN`` once it woke). SQLAlchemy, which never saw the transaction
    start, rolls nothing back, so the pool got the connection back inside a transaction
    that never ended, and every later "transaction" on it was a savepoint within that
    one: its commit released the savepoint, committed nothing, and the order answered
    201 was lost (operator walk: 28 of 1,990 orders after a 20-second freeze). Such a
    connection is thrown away here; the pool hands out another (``DisconnectionError``)
    and PostgreSQL ends the orphaned transaction when its connection closes. Two
    attribute reads a checkout, no round trip.

    A connection asyncpg closed while it sat in the pool (it aborts one whose cancel or
    close timed out while PostgreSQL hung) is thrown away the same way: asking it about
    its transaction raised ``AttributeError``, a 500 instead of a 503. A server that
    closed one connection (a restart, a failover) most likely closed them all, so that
    retires every connection the pool opened before it (``InvalidatePoolError``), as a
    statement that finds its connection lost does (``app.platform.driver``)."""
    raw = dbapi_connection.driver_connection
    if raw.is_closed():
        raise InvalidatePoolError("connection closed while it was in the pool")
    if getattr(raw, "_top_xact", None) is not None or raw.is_in_transaction():
        log.warning("a pooled connection was left inside a transaction: closed, not reused")
        raise DisconnectionError("connection left inside a transaction")


def application_name() -> str:
    """What this process's connections call themselves (``pizzeria-worker-payment``)."""
    return f"pizzeria-{logs.part()}"


def _pass_on_niceness(connection: Any, record: Any) -> None:
    """SQLAlchemy's ``connect`` hook: the new connection's backend, niced like us
    (``app.platform.priority``). asyncpg knows the backend's pid from the handshake."""
    priority.pass_on_to_backend(connection.driver_connection.get_server_pid())


def encode_json(value: Any) -> str:
    """JSON and JSONB columns (event payloads, order views, board cards) through msgspec
    rather than the stdlib ``json``: an order writes and reads a few dozen documents, and
    msgspec does each in a fraction of the time. Same JSON values: PostgreSQL parses
    them, so spacing and escaping do not matter."""
    return msgspec.json.encode(value).decode()


def transaction_pooling_args() -> dict[str, Any]:
    """What asyncpg needs behind PgBouncer in transaction pooling mode, in one place.

    Each transaction may run on another server connection, and a statement prepared in
    one transaction is gone (or belongs to someone else) in the next. So: no statement
    cache, neither asyncpg's nor SQLAlchemy's, and prepared statements named uniquely
    (asyncpg numbers them per client connection: two clients would collide on one server
    connection). Session state is off limits too: no ``SET``, no advisory session locks,
    no ``LISTEN`` (the relay listens on ``DATABASE_DIRECT_URL``)."""
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__pizzeria_{uuid.uuid4().hex}__",
    }


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


#: an engine's execution option: its connections go through PgBouncer's transaction
#: pooling (``DATABASE_POOLING=transaction``)
TRANSACTION_POOLED = "pizzeria_transaction_pooled"
#: ``session.info`` key of a ``read_only`` session (``record_event`` refuses it)
READ_ONLY = "db.read_only"


def read_only(source: async_sessionmaker[AsyncSession] | AsyncSession) -> AsyncSession:
    """A session for a look-up that changes nothing, on the pool of ``source`` (a
    session factory, or a session whose transaction should not hold the look-up): no
    ``BEGIN`` and no ``ROLLBACK`` around its statements (two of the three round trips of
    a one-row read). Each statement sees what was committed when it ran, so use it for
    reads that need no snapshot across statements; a change needs a transaction
    (``app.platform.uow``)."""
    bind = source.bind if isinstance(source, AsyncSession) else source.kw["bind"]
    return AsyncSession(
        bind=_autocommit(bind),
        expire_on_commit=False,
        autoflush=False,
        info={READ_ONLY: True},
    )


class Lookup(AsyncSession):
    """A ``read_only`` session for driver statements only (``app.platform.driver``), on a
    connection taken straight from the pool: the look-ups every request or order makes
    (an account's standing, the pizzas of an order). A one-row look-up in a ``read_only``
    session costs about 450 µs of CPU (SQLAlchemy's session transaction, connection and
    their greenlet switches), in this one about 260, of which the statement is 85
    (``pizzeria bench statements``). It has no bind, so an ORM statement on it fails at
    once instead of taking a second connection from the pool. Each statement is a
    transaction of its own (also through PgBouncer's transaction pooling)."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(expire_on_commit=False, autoflush=False, info={READ_ONLY: True})
        self.engine = engine
        self._pooled: PoolProxiedConnection | None = None

    async def pooled(self) -> PoolProxiedConnection:
        """The pool's connection of this look-up, taken at its first statement."""
        if self._pooled is None:
            taken = await self.engine.raw_connection()
            if self._pooled is not None:  # two statements at once: one connection is kept
                await greenlet_spawn(taken.close)
            else:
                self._pooled = taken
        return self._pooled

    async def lose(self, error: BaseException) -> None:
        """The connection is lost: closed, never handed out again, and the pool's older
        connections retired with it (``retire_older``)."""
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            retire_older(self.engine, pooled, error)
            await greenlet_spawn(pooled.invalidate, error)

    async def close(self) -> None:
        pooled, self._pooled = self._pooled, None
        # its Session never held anything (no bind): nothing of it to close
        if pooled is not None:  # back to the pool (no transaction is open on it)
            await greenlet_spawn(pooled.close)


def retire_older(engine: AsyncEngine, pooled: PoolProxiedConnection, error: BaseException) -> None:
    """A connection was lost under a statement: every connection the pool made before it
    is replaced at its next checkout, as SQLAlchemy's own execution does on a disconnect
    (``Connection._handle_dbapi_exception``, through the pool's ``_invalidate``). A
    database that dropped one connection (a restart, a failover) dropped them all, and
    each would otherwise fail one more request (a 503) before the pool noticed. Best
    effort: it runs while an error is being raised, which it must not replace (the pool's
    ``_invalidate`` is SQLAlchemy's own, not public API)."""
    try:
        engine.sync_engine.pool._invalidate(pooled, error, _checkin=False)
    except Exception:
        log.exception("could not retire the pool's older connections")


def violated_constraint(error: IntegrityError) -> str | None:
    """The name of the constraint a statement broke, as PostgreSQL reports it (asyncpg's
    error, under SQLAlchemy's and its adapter's); None when it names none."""
    cause = error.orig.__cause__ if error.orig is not None else None
    name = getattr(cause, "constraint_name", None)
    return name if isinstance(name, str) else None


def lookup(source: async_sessionmaker[AsyncSession] | AsyncSession) -> Lookup:
    """A ``Lookup`` on the pool of ``source``: as ``read_only``, for driver statements."""
    if isinstance(source, Lookup):
        return Lookup(source.engine)
    bind = source.bind if isinstance(source, AsyncSession) else source.kw["bind"]
    if not isinstance(bind, AsyncEngine):
        raise TypeError(f"a look-up needs an engine's pool, not {bind!r}")
    return Lookup(bind)


@functools.lru_cache(maxsize=16)
def _autocommit(engine: AsyncEngine) -> AsyncEngine:
    if engine.get_execution_options().get(TRANSACTION_POOLED):
        return engine  # a transaction keeps the statements on one server connection
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as a plain libpq/asyncpg DSN (for LISTEN and the benchmark)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
