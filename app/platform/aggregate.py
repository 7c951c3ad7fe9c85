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

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import DateTime, Enum, Integer
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, MappedColumn, mapped_column

from app.platform.db import utcnow
from app.platform.events import DomainEvent, Event
from app.platform.outbox import record_event
from app.platform.statemachine import StateMachine

S = TypeVar("S", bound=StrEnum)
E = TypeVar("E", bound=DomainEvent)

#: where an aggregate keeps the events it has not recorded yet (not a column)
_PENDING = "_pending_events"


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
