"""Migrations are the only way a schema comes to be: they build the whole database from
nothing, match the models exactly, and can be walked down and up again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.support import env

pytestmark = pytest.mark.migrations

CONTEXT_SCHEMAS = {
    "platform",
    "accounts",
    "menu",
    "ordering",
    "payment",
    "delivery",
    "coupon",
    "refund",
    "audit",
    "status",
}


def _alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(env.ROOT / "alembic.ini"), *args],
        cwd=env.ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )


def _schemas(url: str) -> set[str]:
    async def read() -> set[str]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            rows = await conn.fetch("SELECT nspname FROM pg_namespace")
        finally:
            await conn.close()
        return {row["nspname"] for row in rows}

    return asyncio.run(read())


@pytest.fixture
def empty_database() -> Iterator[str]:
    name = f"pizzeria_test_migrations_{os.getpid()}"
    admin = env.PG_BASE.replace("postgresql+asyncpg://", "postgresql://", 1) + "/postgres"

    async def recreate() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    yield env.database_url(name)
    env.drop_database(name)


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_environment_alone_creates_no_schema(empty_database: str) -> None:
    _ok(_alembic(empty_database, "current"))
    assert not CONTEXT_SCHEMAS & _schemas(empty_database)


def test_upgrade_matches_the_models_and_survives_down_and_up(empty_database: str) -> None:
    _ok(_alembic(empty_database, "upgrade", "head"))
    assert _schemas(empty_database) >= CONTEXT_SCHEMAS
    _ok(_alembic(empty_database, "check"))

    _ok(_alembic(empty_database, "downgrade", "base"))
    assert not CONTEXT_SCHEMAS & _schemas(empty_database)

    _ok(_alembic(empty_database, "upgrade", "head"))
    _ok(_alembic(empty_database, "check"))


def test_file_names_sort_in_chain_order() -> None:
    script = ScriptDirectory.from_config(Config(str(env.ROOT / "alembic.ini")))
    chain = [rev for rev in script.walk_revisions("base", "heads")]
    assert len(script.get_heads()) == 1, "the migrations must form one chain"
    in_chain_order = [Path(rev.path).name for rev in reversed(chain)]
    assert in_chain_order == sorted(in_chain_order)


def _migrate_check(url: str) -> subprocess.CompletedProcess[str]:
    """What a worker pod's init container runs before the worker starts."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate", "--check"],
        cwd=env.ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_migrate_check_tells_a_migrated_database_from_an_empty_one(empty_database: str) -> None:
    assert _migrate_check(empty_database).returncode == 1
    _ok(_alembic(empty_database, "upgrade", "head"))
    _ok(_migrate_check(empty_database))
