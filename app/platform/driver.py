"""Statements run straight on the asyncpg connection of a session: for the few that every
order or every signed-in request runs.

Through ``session.execute`` a one-row statement costs about 300 µs of CPU on the bench
machine, of which asyncpg's own work is about 60: the rest is SQLAlchemy's, on every
execution (the cache key, an execution context, result objects, two greenlet switches).
A ``Statement`` is the same Core statement, compiled once per dialect by SQLAlchemy
(its SQL, its casts, and its bind processors for enums and JSON), then run by the driver
on the connection of the session's transaction, which is asked of SQLAlchemy once per
transaction: about what asyncpg alone costs, from a transaction's second statement on
(``pizzeria bench statements``). What it gives up: the rows are asyncpg records
(``row["name"]``), decoded by the driver only (JSON is, by the engine's codecs; select
plain columns), and the ORM knows nothing of them, so use it for rows no ORM object of
the session holds; Python-side column defaults are not applied (pass every value: one the
statement needs and the values leave out is a ``KeyError``).

Rows a transaction only writes need no round trip each: ``Statement.add`` holds them
(an ``INSERT``, or an ``UPDATE`` whose answer nothing needs), and the session writes the
rows added so far in ONE statement (a table's new rows as one multi-row ``INSERT``, an
``UPDATE`` per row, together as data-modifying CTEs) just before the next statement that
could see or meet them, or at its commit. That is any ORM statement, and a driver
statement on one of their tables or on one a foreign key links to them
(``Statement._waits_for``); a driver statement on other tables runs first, since nothing
it reads or writes can tell (the shop's one trigger, the outbox's, only notifies), and
the rows go with those added after it. The CTEs of a statement all see the tables as
they were before it, so a row added and then changed, or changed twice, is written by
statements one after the other (``_groups``). A transaction that is nothing but added
rows (an order placed without a coupon: order, lines, payment, outbox, view) is then
that one statement, sent without ``BEGIN`` and ``COMMIT``: PostgreSQL runs a lone
statement as a transaction of its own, all of it or nothing. Seven round trips become
one: 1.37 ms of CPU, client and server, become 0.33 on the bench machine. The price: a
constraint an added row breaks (a unique key, a foreign key) fails that later statement
or the commit, not the ``add``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Insert, Update, bindparam, literal_column, select
from sqlalchemy import event as orm_event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement, visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import ValuesBase
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.util import find_tables
from sqlalchemy.util import await_only

from app.platform.db import READ_ONLY, Lookup, retire_older

#: one value's conversion for the driver (an enum to its name, a dict to JSON text)
Processor = Callable[[Any], Any]
#: a bind the values must give (a ``bindparam`` without a value of its own)
_GIVEN: Any = object()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: each bind's name, conversion, and value when the statement holds it (a literal,
    #: like a JSON key in ``json_build_object('qty', …)``)
    binds: tuple[tuple[str, Processor | None, Any], ...]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [
            value if process is None or value is None else process(value)
            for name, process, held in self.binds
            for value in (values[name] if held is _GIVEN else held,)
        ]


class Statement:
    """A Core statement with named binds (``bindparam``; for an insert, the columns its
    values name, as ``session.execute`` takes them), run on the driver connection of a
    session: see the module doc for when."""

    def __init__(self, statement: ClauseElement) -> None:
        self._statement = statement
        self._compiled: dict[tuple[Dialect, tuple[str, ...]], _Compiled] = {}

    def compiled(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        """The statement compiled for values with these keys (once per dialect and keys,
        as SQLAlchemy compiles an execution: an insert gets a column per key)."""
        found = self._compiled.get((dialect, keys))
        if found is None:
            compiled = cast(
                SQLCompiler, self._statement.compile(dialect=dialect, column_keys=list(keys))
            )
            if "POSTCOMPILE" in compiled.string:
                raise ValueError("an expanding bind (IN list) cannot run on the driver")
            binds = tuple(
                (name, bind.type.dialect_impl(dialect).bind_processor(dialect), _held(bind, keys))
                for name in compiled.positiontup or ()
                for bind in (compiled.binds[name],)
            )
            found = self._compiled[dialect, keys] = _Compiled(compiled.string, binds)
        return found

    async def fetch(self, session: AsyncSession, values: Mapping[str, Any]) -> list[Any]:
        """The rows (asyncpg records) the statement returns."""

        def call(compiled: _Compiled) -> _Call:
            args = compiled.args(values)
            return lambda driver: driver.fetch(compiled.sql, *args)

        return list(await self._run(session, tuple(values), call))

    async def fetchrow(self, session: AsyncSession, values: Mapping[str, Any]) -> Any | None:
        """The first row the statement returns, or None."""

        def call(compiled: _Compiled) -> _Call:
            args = compiled.args(values)
            return lambda driver: driver.fetchrow(compiled.sql, *args)

        return await self._run(session, tuple(values), call)

    async def execute_many(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement once per row (every row with the same keys), in one round trip
        (asyncpg pipelines them)."""

        def call(compiled: _Compiled) -> _Call:
            args = [compiled.args(row) for row in rows]
            return lambda driver: driver.executemany(compiled.sql, args)

        if rows:
            await self._run(session, tuple(rows[0]), call)

    def add(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement for ``rows`` (every row with the same keys) before the next
        statement that could see them, or at the commit, in one statement with the other
        rows added by then (see the module doc): for an ``INSERT`` or ``UPDATE`` without
        ``RETURNING`` whose answer nothing needs. The values are read when the rows are
        written: do not change them in place after adding."""
        if not isinstance(self._statement, Insert | Update) or self._statement._returning:
            raise TypeError("only an INSERT or UPDATE without RETURNING can be added")
        if isinstance(session, Lookup) or session.info.get(READ_ONLY):
            raise TypeError("rows are added to a transaction: not to a look-up or a reader")
        if session.sync_session.get_nested_transaction() is not None:
            raise TypeError("rows are not added inside a savepoint")
        if not rows:
            return
        sync = session.sync_session
        if not session.in_transaction():
            # rows belong to a transaction, as an ORM object added would: its end without
            # a commit, even before any statement ran, forgets them (``_forget_added``)
            sync.begin()
        added: _Added | None = sync.info.get(_ADDED)
        if added is None:
            added = sync.info[_ADDED] = _Added(session, sync.get_transaction())
        added.parts.append((self, tuple(rows[0]), rows))

    @functools.cached_property
    def _binds(self) -> frozenset[str]:
        """The names of the binds the statement holds itself (an ``UPDATE``'s ``WHERE``,
        an upsert's values)."""
        return frozenset(
            bind.key
            for bind in visitors.iterate(self._statement)
            if isinstance(bind, BindParameter)
        )

    @functools.cached_property
    def _reaches(self) -> frozenset[Any]:
        """The tables the statement reads or writes, and those their foreign keys name
        (empty when SQLAlchemy cannot tell: a textual statement)."""
        tables = find_tables(self._statement, include_crud=True, include_joins=True)
        named = {key.column.table for table in tables for key in table.foreign_keys}
        return frozenset({*tables, *named})

    def _waits_for(self, added: _Added) -> bool:
        """Whether the rows added before this statement must be written before it: it
        reads or writes a table of theirs (or one its or their foreign keys name), or
        nobody can tell. Otherwise they wait for a later statement, and go in one with
        the rows added after it (a capture locks the payment, adds its change, then locks
        the order: that lock need not wait for the payment's update, nor send it alone)."""
        reaches = self._reaches
        return not reaches or any(reaches & part[0]._reaches for part in added.parts)

    @property
    def _table(self) -> Any:
        return cast(Insert | Update, self._statement).table

    @property
    def _plain_insert(self) -> bool:
        """A table insert whose binds are its columns' values (many rows: one ``INSERT``),
        without ``ON CONFLICT`` (an upsert meets rows of its own table: ``_groups``)."""
        return (
            isinstance(self._statement, Insert)
            and not self._binds
            and self._statement._post_values_clause is None
        )

    def _for_rows(self, keys: tuple[str, ...], count: int, prefix: str) -> list[ValuesBase]:
        """The statement for ``count`` rows of ``keys``, its binds named
        ``{prefix}{row}_{key}``: a plain table insert as one multi-row ``INSERT``, any
        other as one statement per row."""
        if self._plain_insert:
            columns = self._table.c
            rows = [
                {key: bindparam(f"{prefix}{row}_{key}", type_=columns[key].type) for key in keys}
                for row in range(count)
            ]
            return [cast(Insert, self._statement).values(rows)]
        return [self._one_row(keys, f"{prefix}{row}_") for row in range(count)]

    def _one_row(self, keys: tuple[str, ...], prefix: str) -> ValuesBase:
        """The statement for one row, its binds named ``{prefix}{key}``: a key the
        statement binds already is that bind, renamed; another is the value of its
        column (as ``session.execute`` takes them)."""

        def renamed(element: Any) -> BindParameter[Any] | None:
            if isinstance(element, BindParameter) and element.key in keys:
                return bindparam(f"{prefix}{element.key}", type_=element.type)
            return None

        replace = cast(Any, visitors.replacement_traverse)
        row = cast(Insert | Update, replace(self._statement, {}, renamed))
        columns = self._table.c
        values = {
            key: bindparam(f"{prefix}{key}", type_=columns[key].type)
            for key in keys
            if key not in self._binds
        }
        return row.values(values) if values else row

    async def _run(
        self,
        session: AsyncSession,
        keys: tuple[str, ...],
        call: Callable[[_Compiled], _Call],
        *,
        begin: bool = True,
    ) -> Any:
        """The call on the driver connection of the session's transaction, which commits
        or rolls back with everything else the session did; a database error comes out
        as SQLAlchemy would raise it (``DBAPIError``), the connection invalidated when it
        is lost, so callers and error pages cannot tell the two paths apart."""
        if isinstance(session, Lookup):
            compile_it = functools.partial(self.compiled, session.engine.dialect, keys)
            return await _look_up(session, compile_it, call)
        added: _Added | None = session.sync_session.info.get(_ADDED)
        if added is not None and self._waits_for(added):
            await write_added(session)
        bound = await _bound(session)
        compiled = self.compiled(bound.connection.dialect, keys)
        run = call(compiled)  # a value left out is a KeyError here, as it is
        adapter = bound.adapter
        try:
            # SQLAlchemy sends BEGIN lazily, with the first statement it runs itself,
            # exactly like this (its cursor's ``_prepare_and_execute``): without it, a
            # statement run first here would commit on its own (``test_driver`` would
            # fail). Nothing is begun for an autocommit session (``read_only``), nor for
            # a transaction's only statement, its commit following (``write_added``).
            if begin and adapter._transaction is None:
                await adapter._start_transaction()
            return await run(bound.driver)
        except Exception as error:
            session.sync_session.info.pop(_BOUND, None)  # the next statement asks afresh
            connection = bound.connection

            async def lose(lost: BaseException) -> None:
                retire_older(connection.engine, bound.pooled, lost)
                await connection.invalidate(lost)

            raise await _as_sqlalchemy_error(
                connection.dialect, adapter, compiled.sql, error, lose
            ) from error


#: ``Session.info``: the rows added (``Statement.add``) and not yet written
_ADDED = "pizzeria.driver.added"
#: a part of a session's added rows: the insert, the keys of its rows, the rows
_Part = tuple[Statement, tuple[str, ...], Sequence[Mapping[str, Any]]]
#: what ``_together`` makes one statement for: each part's statement, the keys of its
#: rows and how many rows it has
_Shape = tuple[tuple[Statement, tuple[str, ...], int], ...]


@dataclass(slots=True)
class _Added:
    """The rows added to a session's transaction, in the order added, and the session
    (the ORM's hooks, which get its synchronous side, write them through it)."""

    session: AsyncSession
    #: the transaction they belong to (the session's root one): its end drops them
    transaction: SessionTransaction | None
    parts: list[_Part] = field(default_factory=list)


async def write_added(session: AsyncSession, *, commit_follows: bool = False) -> None:
    """Write the rows added to the session's transaction, in one statement (or one per
    ``_groups``). With ``commit_follows`` (the unit of work's last step before its
    commit), nothing run in the transaction yet, no ORM object waiting for the commit's
    flush and one statement to send, it is sent alone: PostgreSQL commits it by itself,
    and the commit that follows sends nothing."""
    sync = session.sync_session
    added: _Added | None = sync.info.pop(_ADDED, None)
    if added is None or not added.parts:
        return
    groups = _groups(added.parts)
    alone = commit_follows and len(groups) == 1 and not (sync.new or sync.dirty or sync.deleted)
    for parts in groups:
        together, names = _together(tuple((st, keys, len(rows)) for st, keys, rows in parts))
        given = (row[key] for _, keys, rows in parts for row in rows for key in keys)
        values = dict(zip(names, given, strict=True))

        def call(compiled: _Compiled, values: dict[str, Any] = values) -> _Call:
            args = compiled.args(values)
            return lambda driver: driver.execute(compiled.sql, *args)

        await together._run(session, (), call, begin=not alone)


def _groups(parts: list[_Part]) -> list[list[_Part]]:
    """The parts in the order added, cut where one statement would not do what they
    asked one after the other: the CTEs of a statement all see the tables as they were
    before it, so a table's rows are written and then changed (or changed twice) by
    statements one after the other. Inserts of new rows into one table share one."""
    groups: list[list[_Part]] = [[]]
    only_inserts: dict[Any, bool] = {}  # the current group's tables: only plain inserts?
    for part in parts:
        table, plain = part[0]._table, part[0]._plain_insert
        if table in only_inserts and not (plain and only_inserts[table]):
            groups.append([])
            only_inserts = {}
        groups[-1].append(part)
        only_inserts[table] = only_inserts.get(table, True) and plain
    return [group for group in groups if group]


@functools.lru_cache(maxsize=256)
def _together(shape: _Shape) -> tuple[Statement, tuple[str, ...]]:
    """One statement for added rows of this shape: one table's alone, or each as a CTE of
    a ``SELECT 1`` (a data-modifying CTE runs to completion, read or not); and its bind
    names, part by part, row by row, key by key (the order ``write_added`` reads values)."""
    inserts = [
        one
        for n, (statement, keys, count) in enumerate(shape)
        for one in statement._for_rows(keys, count, f"a{n}_")
    ]
    names = tuple(
        f"a{n}_{row}_{key}"
        for n, (_, keys, count) in enumerate(shape)
        for row in range(count)
        for key in keys
    )
    if len(inserts) == 1:
        return Statement(inserts[0]), names
    ctes = [insert.cte(f"added_{n}") for n, insert in enumerate(inserts)]
    return Statement(select(literal_column("1")).add_cte(*ctes)), names


def _write_now(session: Session) -> None:
    """From the ORM's synchronous hooks (run in SQLAlchemy's greenlet, where an await
    can be waited for): write the added rows before what the ORM is about to run."""
    added: _Added | None = session.info.get(_ADDED)
    if added is not None:
        await_only(write_added(added.session))


@orm_event.listens_for(Session, "do_orm_execute")
def _write_added_before_execute(state: ORMExecuteState) -> None:
    _write_now(state.session)


@orm_event.listens_for(Session, "before_flush")
def _write_added_before_flush(session: Session, context: UOWTransaction, instances: Any) -> None:
    _write_now(session)


@orm_event.listens_for(Session, "before_commit")
def _write_added_at_commit(session: Session) -> None:
    """A commit outside the unit of work (which writes them itself, as its last step)
    writes them too, in the transaction (the commit's other checks come after)."""
    _write_now(session)


@orm_event.listens_for(Session, "after_transaction_create")
def _no_savepoint_over_added(session: Session, transaction: SessionTransaction) -> None:
    """Rows added before a savepoint would be written inside it, and rolled back with
    it: refused (nothing in the shop takes savepoints; ``write_added`` first)."""
    if transaction.nested and _ADDED in session.info:
        raise RuntimeError("rows added and not written: write_added before a savepoint")


@orm_event.listens_for(Session, "after_transaction_end")
def _forget_added(session: Session, transaction: SessionTransaction) -> None:
    """Rows added in a transaction that ended without writing them (a rollback, the
    session closed) were never written, and a later transaction must not write them."""
    added: _Added | None = session.info.get(_ADDED)
    if added is not None and added.transaction is transaction:
        session.info.pop(_ADDED, None)


async def _look_up(
    session: Lookup, compile_it: Callable[[], _Compiled], call: Callable[[_Compiled], _Call]
) -> Any:
    """The call on the look-up's pooled connection, outside any transaction; compiled
    once connected (the dialect knows the server's version from then on)."""
    dialect = session.engine.dialect
    try:
        pooled = await session.pooled()
    except Exception as error:  # wrapped as SQLAlchemy's own connect wraps it
        raise await _as_sqlalchemy_error(dialect, None, None, error, session.lose) from error
    compiled = compile_it()
    run = call(compiled)  # a value left out is a KeyError here, as it is
    try:
        return await run(pooled.driver_connection)
    except Exception as error:
        raise await _as_sqlalchemy_error(
            dialect, pooled.dbapi_connection, compiled.sql, error, session.lose
        ) from error


@dataclass(frozen=True, slots=True)
class _Bound:
    """The connection of one transaction of a session, at each of its three levels."""

    transaction: SessionTransaction
    connection: AsyncConnection
    pooled: PoolProxiedConnection  # the pool's handle on it
    adapter: Any  # SQLAlchemy's wrapper of the asyncpg connection
    driver: Any  # the asyncpg connection


#: where a session keeps its transaction's ``_Bound`` (``Session.info``)
_BOUND = "pizzeria.driver.bound"


async def _bound(session: AsyncSession) -> _Bound:
    """The connection of the session's transaction, asked of SQLAlchemy once per
    transaction: asking costs two greenlet switches (``session.connection()``, then its
    raw connection), about 40 µs of CPU, and a placement runs seven statements here, the
    payment's capture fourteen. A transaction keeps its connection until it ends, and
    its end (commit, rollback, a failure that deactivates it) makes the next statement ask
    again: a new transaction is a new ``SessionTransaction`` object, an ended one is not
    active. The innermost one is compared, so a savepoint that failed is noticed too."""
    sync = session.sync_session
    transaction = _innermost(sync)
    bound: _Bound | None = sync.info.get(_BOUND)
    if (
        bound is not None
        and transaction is not None
        and bound.transaction is transaction
        and transaction.is_active
    ):
        return bound
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    transaction = _innermost(sync)
    assert transaction is not None  # session.connection() began one
    bound = _Bound(transaction, connection, raw, raw.dbapi_connection, raw.driver_connection)
    sync.info[_BOUND] = bound
    return bound


def _innermost(sync: Session) -> SessionTransaction | None:
    return sync.get_nested_transaction() or sync.get_transaction()


def _held(bind: BindParameter[Any], keys: tuple[str, ...]) -> Any:
    """The value ``bind`` holds itself (a literal in the SQL, a limit), or ``_GIVEN`` when
    the values must give it. A value given for a bind that holds one would be ignored
    here (SQLAlchemy would use it): refused, as is a bind whose value is computed."""
    if bind.callable is not None:
        raise ValueError(f"bind {bind.key!r} computes its value: not on the driver")
    if bind.required or bind.value is None:
        return _GIVEN
    if bind.key in keys:
        raise ValueError(f"bind {bind.key!r} holds a value of its own: give it no other")
    return bind.value


#: a call on the asyncpg connection
_Call = Callable[[Any], Awaitable[Any]]


async def _as_sqlalchemy_error(
    dialect: Dialect,
    adapter: Any,  # None: no connection yet (a connect failed)
    sql: str | None,
    error: Exception,
    invalidate: Callable[[BaseException], Awaitable[None]],
) -> Exception:
    """``error`` as SQLAlchemy's own execution raises it: asyncpg's error translated by
    its adapter, wrapped in ``DBAPIError``'s subclass for it, the connection invalidated
    when it is a disconnect (``Connection._handle_dbapi_exception`` does the same)."""
    dbapi_error: Exception = error
    if adapter is not None and not isinstance(error, dialect.loaded_dbapi.Error):
        try:
            adapter._handle_exception(error)  # raises the translated error
        except Exception as translated:
            dbapi_error = translated
    if not isinstance(dbapi_error, dialect.loaded_dbapi.Error):
        return error  # not the database's: as it is
    disconnect = dialect.is_disconnect(dbapi_error, adapter, None)
    if disconnect:
        await invalidate(dbapi_error)
    return DBAPIError.instance(
        sql,
        None,
        dbapi_error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=disconnect,
        dialect=dialect,
    )
