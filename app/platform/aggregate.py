"""What every aggregate's model shares: a guarded status, a version, the time of its last
change, and the events it has to tell.

An aggregate (an order, a payment, a delivery, a refund, a coupon) changes in one way
only: through its own methods, each of which checks the move against the aggregate's
state machine and counts the change. The ``version`` grows by one per change, because
the read side keeps the newest snapshot it has seen (events can arrive out of order)
and live pages use it as the SSE event id. Every event carries the whole aggregate as it
stands right after the change (a snapshot), so a consumer that missed one still has all
it needs from the next.

The events are collected on the aggregate while a use case runs and written to the
outbox, in the use case's transaction, by ``record_pending``: nothing happens behind the
caller's back (no flush hooks), and an event exists if and only if its change committed.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import (
    ARRAY,
    JSON,
    DateTime,
    Enum,
    Integer,
    Select,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, MappedColumn, mapped_column

from app.platform.db import utcnow
from app.platform.driver import Statement
from app.platform.events import DomainEvent, Event
from app.platform.outbox import record_event
from app.platform.statemachine import StateMachine

S = TypeVar("S", bound=StrEnum)
E = TypeVar("E", bound=DomainEvent)
A = TypeVar("A", bound="Aggregate[Any, Any]")

#: where an aggregate keeps the events it has not recorded yet (not a column)
_PENDING = "_pending_events"
#: where an aggregate read by ``AggregateRows`` keeps its row as read (not a column)
_STORED = "_stored_row"


def status_column(enum: type[S], **kwargs: Any) -> MappedColumn[S]:
    """A status column typed with its enum, stored as the member's value in a
    VARCHAR(20): a loaded row gives the member, and a value the enum does not know is
    refused when it is bound (``LookupError``), before the database sees it.

    No PostgreSQL enum type and no constraint of SQLAlchemy's: the migrations own the
    schema (their CHECK constraints hold each column to its values), so adding a state
    stays a migration that widens a CHECK, not an ``ALTER TYPE``."""
    return mapped_column(
        Enum(
            enum,
            native_enum=False,
            create_constraint=False,
            length=20,
            values_callable=lambda members: [member.value for member in members],
            validate_strings=True,
        ),
        **kwargs,
    )


class Aggregate(Generic[S, E]):
    """The base of an aggregate root's model: ``class Order(Aggregate[OrderStatus,
    OrderChanged], Base)``. ``S`` is its status enum, ``E`` the event every snapshot it
    emits extends.

    A subclass names its state machine (``MACHINE``) and says how it looks as an event
    (``snapshot``) and which order its events belong to (``correlation_id``)."""

    #: the legal moves of ``status``; anything else is a 409
    MACHINE: ClassVar[StateMachine[Any]]

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    #: a member of ``S``; each subclass maps it with ``status_column(S)``, since the
    #: column's type needs the concrete enum (a subclass that forgets fails at import)
    status: Mapped[S]
    #: grows by one per change: the read side keeps the newest snapshot by it
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def correlation_id(self) -> uuid.UUID:
        """The order this aggregate's events belong to (what the logs and the outbox
        group a customer's story by)."""
        raise NotImplementedError

    def snapshot(self, event: type[E], **extra: Any) -> E:
        """The aggregate as it now stands, as ``event`` (``extra``: fields of that event
        that are not the aggregate's own)."""
        raise NotImplementedError

    def move_to(self, target: S) -> S:
        """The only way the status changes: through the machine (``IllegalTransition``,
        409, when the move is not allowed), counted as a change. Returns the status it
        left."""
        machine: StateMachine[S] = self.MACHINE
        # the member even when ``status`` was set from a string and not reloaded since
        current = type(target)(self.status)
        self.status = machine.check(current, target)
        self.changed()
        return current

    def changed(self) -> None:
        """Count a change that is not a status move (a courier booked, a coupon flagged),
        so the read side takes the snapshot that follows as newer."""
        self.version += 1
        self.updated_at = utcnow()

    def emit(self, event: type[E], **extra: Any) -> None:
        """Collect ``event`` with the aggregate as it stands now; ``record_pending`` writes
        it to the outbox."""
        self.pending_events.append(self.snapshot(event, **extra))

    @property
    def pending_events(self) -> list[E]:
        """The events emitted and not recorded yet, oldest first. Kept on the instance
        (not a column): a row loaded from the database starts with none."""
        pending: list[E] = self.__dict__.setdefault(_PENDING, [])
        return pending

    def take_events(self) -> list[E]:
        """The pending events, which are then no longer pending: each is recorded once."""
        events = self.pending_events
        self.__dict__[_PENDING] = []
        return events


def record_pending(
    session: AsyncSession, aggregate: Aggregate[Any, Any], cause: Event | None = None
) -> list[Event]:
    """Write the events ``aggregate`` has collected to the outbox, in the caller's
    transaction; ``cause`` is the event the use case reacted to, if any."""
    return [
        record_event(
            session,
            event,
            aggregate_id=aggregate.id,
            correlation_id=aggregate.correlation_id,
            causation=cause,
        )
        for event in aggregate.take_events()
    ]


class AggregateRows(Generic[A]):
    """An aggregate's row read and written straight on the driver (``app.platform.driver``),
    outside the ORM session: for the aggregates every order changes (its payment, the
    order, its delivery), where the session's identity map, flush and attribute history
    cost more CPU per order than the rest of the transaction's SQL, and buy nothing (one
    row read under its lock, one row written back).

    The aggregate is the same model, changed only by its own methods (``move_to``,
    ``emit``), its events recorded with ``record_pending`` as always. The session does
    not know it, so every change of such an aggregate goes this way: a session's copy of
    the row, read before, would not see it. ``save`` writes back the columns that changed
    since the row was read (a JSON or array value is kept as read, a copy, so one
    changed in place is seen as changed too)."""

    def __init__(self, model: type[A]) -> None:
        mapper = sa_inspect(model)
        self.model = model
        self.table = cast(Table, mapper.local_table)
        #: the mapped attributes, by the column each is stored in
        self._columns = {prop.key: prop.columns[0].name for prop in mapper.column_attrs}
        #: the attributes whose value can change in place (JSON, arrays)
        self._mutable = frozenset(
            key
            for key, name in self._columns.items()
            if isinstance(self.table.c[name].type, JSON | ARRAY)
        )
        # a status column's enum: the driver gives its stored string
        self._enums = {
            key: enum
            for key, name in self._columns.items()
            if (enum := getattr(self.table.c[name].type, "enum_class", None)) is not None
        }
        self._update = Statement(update(self.table).where(self.table.c.id == bindparam("at_id")))

    def select(self) -> Select[Any]:
        """Every column of the row, to read with a ``Statement`` and turn into the
        aggregate with ``loaded`` (add a ``where`` and, to change it, ``with_for_update``)."""
        return select(self.table)

    def loaded(self, row: Mapping[str, Any]) -> A:
        """The aggregate from a row holding its columns (a driver record)."""
        values = {key: row[name] for key, name in self._columns.items()}
        for key, enum in self._enums.items():
            if values[key] is not None:
                values[key] = enum(values[key])
        aggregate = self.model(**values)
        aggregate.__dict__[_STORED] = self._as_stored(values)
        return aggregate

    def stored(self, aggregate: A) -> dict[str, Any]:
        """Take a new ``aggregate`` as its row will stand once inserted: a later ``save``
        writes what changes after this. Returns that row, by column, to insert."""
        values = {key: getattr(aggregate, key) for key in self._columns}
        row = {self._columns[key]: value for key, value in values.items()}
        aggregate.__dict__[_STORED] = self._as_stored(values)
        return row

    async def save(self, session: AsyncSession, aggregate: A) -> None:
        """Write back, in the session's transaction, the columns ``aggregate`` changed
        since ``loaded`` (nothing when it did not change)."""
        stored: dict[str, Any] | None = aggregate.__dict__.get(_STORED)
        if stored is None:
            raise ValueError(f"{aggregate!r} was not read through AggregateRows")
        changed = self._as_stored(
            {
                key: value
                for key in self._columns
                if (value := getattr(aggregate, key)) != stored[key]
            }
        )
        if not changed:
            return
        row = {self._columns[key]: value for key, value in changed.items()}
        # written with the transaction's next statement (``Statement.add``): a capture's
        # payment and order changes go with its delivery, events and view
        self._update.add(session, [{**row, "at_id": aggregate.id}])
        stored.update(changed)

    def _as_stored(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with a copy of each that can change in place, to compare (and write)
        as it was."""
        for key in self._mutable.intersection(values):
            values[key] = copy.deepcopy(values[key])
        return values

    async def record(
        self, session: AsyncSession, aggregate: A, cause: Event | None = None
    ) -> list[Event]:
        """``save`` the change and ``record_pending`` its events: both in the caller's
        transaction, so an event exists if and only if its change committed."""
        await self.save(session, aggregate)
        return record_pending(session, aggregate, cause)
