"""What an operator reads when something is wrong says what is wrong: a retried job names
the error it retries for, and ``migrate --check`` tells a database it cannot reach from
one that is not migrated (an init container would otherwise wait ten minutes and then
blame the schema)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from arq import Retry

from app.platform.db import create_engine, create_session_factory
from app.platform.heartbeat import Heartbeat
from app.platform.logs import why
from app.platform.settings import DatabaseSettings, Settings
from tests.unit.platform.test_bad_settings import SECRETS


def test_a_retry_names_what_it_retries_for() -> None:
    try:
        try:
            raise ConnectionError("payment provider: connection refused")
        except ConnectionError as exc:
            raise Retry(defer=0.06) from exc
    except Retry as retry:
        said = why(retry)
    assert said.startswith("Retry") and "(ConnectionError: payment provider" in said
    assert why(TimeoutError()) == "TimeoutError"


def test_migrate_check_says_the_database_is_unreachable_not_unmigrated() -> None:
    env = {
        **os.environ,
        **SECRETS,
        "DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/pizzeria",
    }
    ran = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.startswith("Error: cannot read the schema: "), ran.stderr
    assert "this release needs" not in ran.stderr


async def test_a_heartbeat_that_cannot_reach_postgresql_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker that cannot reach PostgreSQL does no work: its log says so (once, not at
    every beat), where it said nothing before."""
    unreachable = DatabaseSettings(url="postgresql+asyncpg://postgres@127.0.0.1:1/pizzeria")
    engine = create_engine(replace(Settings(), db=unreachable))
    beating = asyncio.create_task(
        Heartbeat(create_session_factory(engine), "worker", interval=0.05).run()
    )
    try:
        with caplog.at_level(logging.INFO, logger="app.platform.heartbeat"):
            await asyncio.sleep(0.6)
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        await engine.dispose()
    said = [r.getMessage() for r in caplog.records if r.name == "app.platform.heartbeat"]
    assert len(said) == 1 and "PostgreSQL cannot be written" in said[0], said
