"""What an operator reads when something is wrong says what is wrong: a retried job names
the error it retries for, and ``migrate --check`` tells a database it cannot reach from
one that is not migrated (an init container would otherwise wait ten minutes and then
blame the schema)."""

from __future__ import annotations

import os
import subprocess
import sys

from arq import Retry

from app.platform.logs import why
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
