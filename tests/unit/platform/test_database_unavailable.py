"""What counts as "PostgreSQL is away" (503) and what stays a bug (500), for errors that
neither asyncpg nor SQLAlchemy wraps: a connect to a Unix socket whose file is gone."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from app.platform.web import database_unavailable


async def test_a_connect_to_a_socket_file_that_is_gone_is_the_database_away(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        await asyncpg.connect(host=str(tmp_path), user="postgres", database="nowhere")
    assert database_unavailable(raised.value)


def test_a_file_missing_anywhere_else_is_not() -> None:
    with pytest.raises(FileNotFoundError) as raised:
        Path("/nonexistent/template.html").read_text()
    assert not database_unavailable(raised.value)


async def test_the_connect_error_is_found_behind_the_error_raised_from_it(
    tmp_path: Path,
) -> None:
    try:
        await asyncpg.connect(host=str(tmp_path), user="postgres", database="nowhere")
    except FileNotFoundError as error:
        wrapped = RuntimeError("a look-up failed")
        wrapped.__cause__ = error
    assert database_unavailable(wrapped)
