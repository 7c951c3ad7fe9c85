"""Alembic environment: async engine, one schema per context, URL from settings.

Schemas are created by the first migration, not here, so that what a database holds is
exactly what its migrations say. The version table lives in ``public`` for the same
reason (it must exist before any migration has run).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.engine import Connection

from alembic import context
from app.models import Base
from app.platform.db import create_engine
from app.platform.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _adopt_legacy_version_table(connection: Connection) -> None:
    """Databases migrated before round 2 kept the version table in ``platform``."""
    legacy = connection.execute(text("SELECT to_regclass('platform.alembic_version')")).scalar()
    current = connection.execute(text("SELECT to_regclass('public.alembic_version')")).scalar()
    if legacy is not None and current is None:
        connection.execute(text("ALTER TABLE platform.alembic_version SET SCHEMA public"))


def _run(connection: Connection) -> None:
    _adopt_legacy_version_table(connection)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(get_settings(), direct=True)  # a migration keeps its session
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `pizzeria migrate`")
asyncio.run(_run_async())
