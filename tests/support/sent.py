"""What an engine's connections send to PostgreSQL: the statements SQLAlchemy runs and
those run on the driver (``app.platform.driver``) alike, and the ``BEGIN`` of each
transaction. Neither log sees them all: SQLAlchemy's ``before_cursor_execute`` misses
what it did not run, and asyncpg's query log misses the prepared statements SQLAlchemy
runs one by one; each statement is taken from exactly one of them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


class SentStatements:
    """Every query sent on a connection checked out of the engine while inside the block
    (an ``executemany`` is one)."""

    def __init__(self, source: AsyncEngine | async_sessionmaker[AsyncSession]) -> None:
        engine = source if isinstance(source, AsyncEngine) else source.kw["bind"]
        self.engine = engine.sync_engine
        self.queries: list[str] = []
        self._logged: set[Any] = set()

    def __enter__(self) -> SentStatements:
        event.listen(self.engine, "checkout", self._log_queries)
        event.listen(self.engine, "before_cursor_execute", self._ran)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "checkout", self._log_queries)
        event.remove(self.engine, "before_cursor_execute", self._ran)
        for connection in self._logged:
            connection.remove_query_logger(self._sent)

    def starting(self, prefix: str) -> list[str]:
        """The queries that start with ``prefix`` (case and leading blanks ignored)."""
        return [q for q in self.queries if q.lstrip().upper().startswith(prefix.upper())]

    def containing(self, text: str) -> list[str]:
        return [q for q in self.queries if text in q]

    def _log_queries(self, dbapi_connection: Any, *args: Any) -> None:
        connection = dbapi_connection._connection  # the asyncpg connection underneath
        if connection not in self._logged:
            connection.add_query_logger(self._sent)
            self._logged.add(connection)

    def _sent(self, record: Any) -> None:
        """asyncpg's log: the driver's statements, transaction control, ``executemany``."""
        self.queries.append(record.query)

    def _ran(self, _conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        """SQLAlchemy's log: its statements run one by one (its ``executemany`` goes
        through asyncpg's, which logs it)."""
        executemany = bool(args[-1]) if args else False
        if not executemany:
            self.queries.append(statement)
