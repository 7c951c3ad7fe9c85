"""Database engine, sessions and the declarative base shared by every context.

Each context owns one PostgreSQL schema; its models say so with ``__table_args__``.
Services commit explicitly: a use case that moves money or state decides where its
transaction ends, not a framework hook.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from app.platform.settings import Settings

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


def create_engine(
    settings: Settings, pool_size: int | None = None, *, direct: bool = False
) -> AsyncEngine:
    """An engine with a bounded pool. Every process has one, so the sizes must add up to
    less than PostgreSQL's ``max_connections`` (100 by default): web 10+10, relay 2+2,
    each worker ``WORKER_DB_POOL``+same (4+4 by default). With many replicas, put
    PgBouncer in front (``DATABASE_POOLING=transaction``): the pools then hold cheap
    client connections. ``direct``: straight to PostgreSQL (migrations)."""
    size = pool_size or settings.db.pool_size
    url = settings.db.direct_url if direct else settings.db.url
    pooled = settings.db.pooling == "transaction" and not direct
    return create_async_engine(
        url,
        connect_args=transaction_pooling_args() if pooled else {},
        pool_size=size,
        max_overflow=size,
        # No pre-ping (a round trip per checkout, a quarter of a request's time): a
        # connection that died is invalidated when it fails, and that request answers
        # 503 with Retry-After (see app.platform.web) instead of a 500.
        pool_recycle=1800,
        echo=settings.db.echo,
    )


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


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as a plain libpq/asyncpg DSN (for LISTEN and the benchmark)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
