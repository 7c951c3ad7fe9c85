"""Which added parts may share one statement (``app.platform.driver._groups``): the CTEs
of a statement all see the tables as they were before it."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.platform.driver import Statement, _groups
from app.platform.outbox import InboxRow, OutboxRow

_INBOX = cast(Table, InboxRow.__table__)
_OUTBOX = cast(Table, OutboxRow.__table__)
NOTE = Statement(insert(_INBOX))
NOTE_ONCE = Statement(pg_insert(_INBOX).on_conflict_do_nothing())
APPEND = Statement(insert(_OUTBOX))
RETYPE = Statement(update(_OUTBOX).where(_OUTBOX.c.id == bindparam("at_id")))


def _sizes(*statements: Statement) -> list[int]:
    parts = [(statement, ("k",), [{"k": 1}]) for statement in statements]
    return [len(group) for group in _groups(parts)]


def test_new_rows_of_tables_share_one_statement() -> None:
    assert _sizes(NOTE, APPEND, NOTE, APPEND) == [4]


def test_a_change_of_a_table_already_written_starts_the_next_statement() -> None:
    assert _sizes(APPEND, NOTE, RETYPE) == [2, 1]
    assert _sizes(RETYPE, RETYPE) == [1, 1]
    assert _sizes(RETYPE, APPEND) == [1, 1]


def test_an_upsert_does_not_share_a_statement_with_rows_of_its_table() -> None:
    """A plain insert of the key it skips would fail in its place, in no fixed order."""
    assert _sizes(NOTE, NOTE_ONCE) == [1, 1]
    assert _sizes(NOTE_ONCE, APPEND) == [2]
