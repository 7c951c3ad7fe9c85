"""Where the tests find PostgreSQL and Redis, and fresh migrated databases."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
PG_BASE = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Names are per test run, so two runs on one machine (a developer and a helper, say)
# never drop each other's database or steal each other's jobs.
_RUN = os.getpid()
IN_PROCESS_DB = f"pizzeria_test_{_RUN}"
SHOP_DB = f"pizzeria_test_shop_{_RUN}"


def _claim_redis_dbs(count: int) -> list[int]:
    """Reserve ``count`` Redis databases (1 to 15) for this run with a lease in db 0, so
    concurrent runs never share queues, breakers or sessions."""
    import redis

    client = redis.Redis.from_url(f"{REDIS_BASE}/0")
    claimed: list[int] = []
    try:
        for db in range(1, 16):
            key = f"pizzeria:test-run:db{db}"
            if client.set(key, _RUN, nx=True, ex=3600) or _abandoned(client.get(key)):
                client.set(key, _RUN, ex=3600)
                claimed.append(db)
                if len(claimed) == count:
                    return claimed
    finally:
        client.close()
    raise RuntimeError("no free Redis database for this test run (15 in use?)")


def _abandoned(owner: bytes | None) -> bool:
    """A lease whose test run is gone (killed before it could release it)."""
    import psutil

    return owner is not None and owner.isdigit() and not psutil.pid_exists(int(owner))


def claim_redis_db() -> int:
    """One more Redis database for a test that runs a shop of its own."""
    return _claim_redis_dbs(1)[0]


def release_redis_dbs(*dbs: int) -> None:
    """Give back exactly these leases. A test that releases the databases of its own shop
    must not release the run's: another shop would claim a database still in use and the
    two would take each other's jobs (seen in CI: a delivery created in the other shop's
    database, "delivery not found" in this one)."""
    import redis

    client = redis.Redis.from_url(f"{REDIS_BASE}/0")
    try:
        for db in dbs:
            key = f"pizzeria:test-run:db{db}"
            if client.get(key) == str(_RUN).encode():
                client.delete(key)
    finally:
        client.close()


IN_PROCESS_REDIS_DB, SHOP_REDIS_DB = _claim_redis_dbs(2)


def database_url(name: str) -> str:
    return f"{PG_BASE}/{name}"


def redis_url(db: int) -> str:
    return f"{REDIS_BASE}/{db}"


def configure_in_process() -> None:
    os.environ["DATABASE_URL"] = database_url(IN_PROCESS_DB)
    os.environ["REDIS_URL"] = redis_url(IN_PROCESS_REDIS_DB)
    os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-0123456789")
    os.environ.setdefault("COURIER_WEBHOOK_SECRET", "test-courier-webhook-secret-long-enough-0123")
    # Every sandbox of the run opens every other's card tokens (tests tokenize at one and
    # charge at another).
    os.environ.setdefault("SANDBOX_VAULT_KEY", "test-sandbox-vault-key-0123456789abcdef")
    os.environ.setdefault("PARTNER_TIMEOUT", "2")
    os.environ.setdefault("DATABASE_POOL_SIZE", "5")


def fresh_database(name: str, *, flush: bool = True, redis_db: int | None = None) -> str:
    """Drop and recreate ``name``, then migrate it with the real migrations (``flush``:
    and empty its Redis db: ``redis_db``, or the one that goes with a well-known name)."""
    admin = PG_BASE.replace("postgresql+asyncpg://", "postgresql://", 1) + "/postgres"

    async def recreate() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    if flush:
        if redis_db is None:
            redis_db = IN_PROCESS_REDIS_DB if name == IN_PROCESS_DB else SHOP_REDIS_DB
        flush_redis(redis_db)
    url = database_url(name)
    subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        check=True,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, "-m", "app.cli", "menu", "load-demo"],
        check=True,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
    )
    return url


def drop_database(name: str) -> None:
    admin = PG_BASE.replace("postgresql+asyncpg://", "postgresql://", 1) + "/postgres"

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def flush_redis(db: int) -> None:
    import redis

    client = redis.Redis.from_url(redis_url(db))
    client.flushdb()
    client.close()
