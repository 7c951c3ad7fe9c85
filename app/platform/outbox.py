"""Transactional outbox and inbox.

``record_event`` writes an event in the caller's transaction, so an event exists if and
only if the change that caused it committed. ``claim`` lets a handler record that it has
processed an event in the same transaction as its effect, so a redelivered event does
nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import msgspec
from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import READ_ONLY, Base, utcnow
from app.platform.driver import Statement
from app.platform.events import DomainEvent, Event

NOTIFY_CHANNEL = "outbox"
RECORDED = "recorded_events"
#: every event recorded in the open transaction, for observers of the commit (metrics);
#: ``take_recorded`` (the unit of work, before it commits) leaves this one alone
IN_TRANSACTION = "events_in_transaction"


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
        Index(
            "ix_outbox_unfinished",
            "seq",
            postgresql_where=text("published_at IS NOT NULL AND finished_at IS NULL"),
        ),
        {"schema": "platform"},
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    aggregate_type: Mapped[str] = mapped_column(String(50))
    aggregate_id: Mapped[str] = mapped_column(String(100))
    correlation_id: Mapped[str] = mapped_column(String(100), index=True)
    causation_id: Mapped[str | None] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: first handed to Redis (the relay); the row stays "unfinished" until …
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: … every subscriber has its inbox row; meanwhile the reconciler re-enqueues the
    #: missing jobs when ``enqueued_at`` is older than ``EVENT_REDELIVER_SECONDS``
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the subscribers the process that recorded the event runs itself right after its
    #: commit (``app.platform.uow.FollowUp``): the relay leaves them out, and the
    #: reconciler hands them to their queues if they have no inbox row after
    #: ``EVENT_FOLLOW_UP_SECONDS`` (that process died first)
    follow_ups: Mapped[list[str] | None] = mapped_column(ARRAY(String(100)))

    def to_event(self) -> Event:
        return Event(
            id=self.id,
            type=self.type,
            aggregate_type=self.aggregate_type,
            aggregate_id=self.aggregate_id,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            occurred_at=self.occurred_at,
            payload=self.payload,
        )


class InboxRow(Base):
    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_event_id", "event_id"), {"schema": "platform"})

    handler: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def record_event(
    session: AsyncSession,
    event: DomainEvent,
    *,
    aggregate_id: Any,
    correlation_id: Any,
    causation: Event | None = None,
) -> Event:
    """Record an event for the outbox of the caller's transaction: the unit of work
    writes it (``write_recorded``) before it commits, and the relay is woken then.

    The row keeps the contract's wire name and its payload as JSON, the way subscribers
    and the relay read it."""
    if event.ABSTRACT:
        raise TypeError(f"{type(event).__name__} is a shared shape, not an event")
    if session.info.get(READ_ONLY):
        raise TypeError("a read-only session cannot record events: use a unit of work")
    recorded = Event(
        id=uuid.uuid4(),
        type=event.TYPE,
        aggregate_type=event.AGGREGATE,
        aggregate_id=str(aggregate_id),
        correlation_id=str(correlation_id),
        causation_id=str(causation.id) if causation else None,
        occurred_at=utcnow(),
        payload=event.payload(),
    )
    if not session.in_transaction():
        # the event belongs to a transaction (as an added row would): its rollback, even
        # before any statement ran, forgets the event (``uow._forget_rolled_back``)
        session.sync_session.begin()
    session.info.setdefault(RECORDED, []).append(recorded)
    session.info.setdefault(IN_TRANSACTION, []).append(recorded)
    return recorded


def take_recorded(session: AsyncSession) -> list[Event]:
    """The events this session recorded since the last call (call after commit), so the
    web can project them at once for read-your-writes; the status worker would too."""
    events: list[Event] = session.info.pop(RECORDED, [])
    return events


_OUTBOX = cast(Table, OutboxRow.__table__)
#: one row per event, in the order recorded; Core, not the ORM's flush: the row is never
#: read back in its transaction, so there is no object to track and no ``seq`` to return;
#: written by every change, so on the driver (``app.platform.driver``)
_APPEND = Statement(insert(_OUTBOX))


def write_recorded(
    session: AsyncSession,
    events: Sequence[Event],
    follow_ups: Mapping[str, Sequence[str]] | None = None,
    settled: Collection[str] = (),
) -> None:
    """Add ``events`` (what ``take_recorded`` gave the unit of work) to the outbox, just
    before the commit: their rows are written with the transaction's next statement (the
    projection's) or its commit (``Statement.add``); an event's fields are the row's
    columns.

    ``follow_ups`` (by event type) names the subscribers this process runs itself after
    the commit. An event of a ``settled`` type leaves the relay nothing to hand over (its
    subscribers reacted in this transaction or follow up after it): its row is written
    published, and finished unless a follow-up is still to come (the reconciler checks
    that one's inbox row). The relay is woken by the outbox itself: a statement trigger
    sends NOTIFY on NOTIFY_CHANNEL when the INSERT brought an unpublished row
    (transactional: only if this transaction commits; migration c6d8e0f2a4b3)."""
    if not events:
        return
    followed = follow_ups or {}
    now = utcnow()
    rows = []
    for event in events:
        tasks = list(followed.get(event.type, ())) or None
        published = now if event.type in settled else None
        rows.append(
            {
                **msgspec.structs.asdict(event),
                "follow_ups": tasks,
                "published_at": published,
                "enqueued_at": published,
                "finished_at": published if tasks is None else None,
            }
        )
    _APPEND.add(session, rows)


#: built once, the values bound per call: a statement with its values inline costs
#: SQLAlchemy a cache key walk over them on every execution (once per job and reaction)
_INBOX = cast(Table, InboxRow.__table__)
#: once per job and reaction: on the driver (``app.platform.driver``)
_CLAIM = Statement(insert(_INBOX).on_conflict_do_nothing().returning(_INBOX.c.event_id))


async def claim(session: AsyncSession, handler: str, event_id: uuid.UUID) -> bool:
    """Mark ``event_id`` as processed by ``handler``; False if it already was.

    Call it inside the transaction that applies the handler's effect. A concurrent
    duplicate blocks on the primary key until the first commits, then sees the conflict.
    """
    row = {"handler": handler, "event_id": event_id, "processed_at": utcnow()}
    return await _CLAIM.fetchrow(session, row) is not None


async def unclaim(session: AsyncSession, handler: str, event_id: uuid.UUID) -> None:
    """Take back, in the transaction that wrote it, the inbox row ``claim`` wrote: the
    event stays unhandled by ``handler`` once this transaction commits."""
    await session.execute(
        delete(_INBOX).where(_INBOX.c.handler == handler, _INBOX.c.event_id == event_id)
    )


_CLAIM_RECORDED = Statement(insert(_INBOX))


def claim_recorded(session: AsyncSession, handled: Collection[tuple[str, uuid.UUID]]) -> None:
    """Mark events recorded in this very transaction as processed by their handlers
    (``(handler, event id)`` pairs), with the transaction's next statement or its commit
    (``Statement.add``): no one else can have claimed an
    event before it is committed, so there is no conflict to look for (a second claim
    would be a bug, and fails the transaction)."""
    if not handled:
        return
    now = utcnow()
    rows = [{"handler": h, "event_id": e, "processed_at": now} for h, e in handled]
    _CLAIM_RECORDED.add(session, rows)


class DeadLetter(Base):
    """A job that failed for a reason retrying cannot fix (a bad payload, an illegal
    transition, a bug), parked with its event and error until someone retries it, or
    gives it up saying why (its effect no longer wanted: the order settled by hand).

    One row per (handler, event); ``retried_at`` is set when it is sent again,
    ``discarded_at`` when it is discarded (a new failure clears both), so the dead letters
    waiting for someone are those with neither (``WAITING``).
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("handler", "event_id"),
        {"schema": "platform"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    handler: Mapped[str] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(50))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(100))
    event: Mapped[dict[str, Any]] = mapped_column(JSONB)
    error: Mapped[str] = mapped_column(Text)
    error_type: Mapped[str] = mapped_column(String(200))
    traceback: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer, default=1)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    retried_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    discarded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    discard_reason: Mapped[str | None] = mapped_column(Text)


#: the dead letters waiting for someone: neither sent again nor discarded
WAITING = and_(DeadLetter.retried_at.is_(None), DeadLetter.discarded_at.is_(None))


class PipelineAction(Base):
    """What the reconciler did (re-enqueued a lost job, finished an event) and what the
    admins did (retried a dead letter): the pipeline's own log, newest first on the page."""

    __tablename__ = "pipeline_actions"
    __table_args__ = {"schema": "platform"}

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    handler: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str] = mapped_column(Text, default="")


class ProcessBeat(Base):
    """Each relay and worker process says here, every few seconds, how it is doing (its
    Redis connection above all): PostgreSQL is where health can read it even while Redis
    is down."""

    __tablename__ = "processes"
    __table_args__ = {"schema": "platform"}

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    state: Mapped[str] = mapped_column(String(30))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
