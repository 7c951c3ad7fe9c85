"""Reading the order views: the only way pages and the API learn an order's state."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.db import utcnow
from app.platform.errors import NotFound
from app.platform.events import Event
from app.platform.i18n import N_
from app.status import eta, projector
from app.status.eta import Stats as Stats  # each stage's spread, for the board's promises
from app.status.eta import promised_by as promised_by
from app.status.models import BoardCard, OrderView, RefundView
from app.status.pace import forget_stage_stats as forget_stage_stats
from app.status.pace import recent_stage_durations as recent_stage_durations
from app.status.pace import stage_stats as stage_stats
from app.status.projector import BOARD_CHANNEL as BOARD_CHANNEL  # where the board hears news
from app.status.projector import order_channel as order_channel  # where an order's page does
from app.status.schemas import OrderDocument as OrderDocument  # an order, as pages show it

#: the board shows delivered cards for this long, then they leave it
DELIVERED_VISIBLE = timedelta(minutes=30)


@dataclass(frozen=True)
class OrderEntry:
    """An order as its customer (or staff) looks it up: a copy of the read model's row,
    for the pages and APIs of ordering, refund and status."""

    order_id: uuid.UUID
    customer_id: uuid.UUID
    #: grows by one per change the view took in: the SSE event id
    version: int
    #: the document pages and the API show (``OrderDocument.of`` reads it)
    doc: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: OrderView) -> OrderEntry:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class BoardEntry:
    """One card of the staff board, as the delivery pages show it (a copy, not the
    read model's row)."""

    delivery_id: uuid.UUID
    order_id: uuid.UUID
    status: str
    courier_status: str
    rider: str | None
    items: list[dict[str, Any]]
    address: str
    paid_at: datetime | None
    promised_by: datetime | None
    version: int
    updated_at: datetime
    customer_name: str | None
    phone: str | None
    note: str | None
    total_amount: int | None
    currency: str | None
    history: list[dict[str, Any]]

    @classmethod
    def of(cls, row: BoardCard) -> BoardEntry:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class RefundEntry:
    """A refund as customers and staff look it up (a copy of the read model's row, for
    the refund pages and API)."""

    refund_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    status: str
    reason_code: str
    reason_label: str
    reason: str
    amount: int
    currency: str
    cancelled_by: str | None
    cancel_note: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: RefundView) -> RefundEntry:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


async def order_view(
    session: AsyncSession, order_id: uuid.UUID, customer_id: uuid.UUID
) -> OrderEntry:
    """The customer's own order view; someone else's order is simply not found (404)."""
    created = projector.created_view(session, order_id)
    if created is not None and created["customer_id"] == customer_id:
        return OrderEntry(**{f.name: created[f.name] for f in fields(OrderEntry)})
    view = await session.scalar(
        select(OrderView).where(
            OrderView.order_id == order_id, OrderView.customer_id == customer_id
        )
    )
    if view is None:
        raise NotFound(N_("order not found"))
    return OrderEntry.of(view)


async def order_views(
    session: AsyncSession, customer_id: uuid.UUID, limit: int = 100
) -> list[OrderEntry]:
    rows = await session.scalars(
        select(OrderView)
        .where(OrderView.customer_id == customer_id)
        .order_by(OrderView.created_at.desc())
        .limit(limit)
    )
    return [OrderEntry.of(row) for row in rows]


#: the most cards the board shows, the longest-waiting first
BOARD_LIMIT = 500


@dataclass(frozen=True)
class BoardCards:
    entries: list[BoardEntry]
    #: cards on the board's columns that it does not show (more than ``BOARD_LIMIT``)
    not_shown: int


async def board_cards(session: AsyncSession, limit: int | None = None) -> BoardCards:
    """Deliveries in progress, plus the ones delivered in the last half hour; at most
    ``limit`` of them, and how many more there are, so the board can say that it cut
    the newest off (it used to say nothing, and new orders silently stopped appearing)."""
    limit = BOARD_LIMIT if limit is None else limit
    recent = utcnow() - DELIVERED_VISIBLE
    on_the_board = or_(
        BoardCard.status.not_in(("delivered", "cancelled", "returned")),
        (BoardCard.status == "delivered") & (BoardCard.updated_at >= recent),
    )
    rows = list(
        await session.scalars(
            select(BoardCard)
            .where(on_the_board)
            .order_by(BoardCard.paid_at.asc().nulls_last())
            .limit(limit + 1)
        )
    )
    if len(rows) <= limit:
        return BoardCards([BoardEntry.of(row) for row in rows], 0)
    counted = select(func.count()).select_from(BoardCard).where(on_the_board)
    total = int(await session.scalar(counted) or 0)
    return BoardCards([BoardEntry.of(row) for row in rows[:limit]], max(total - limit, 1))


async def project_in_transaction(
    session: AsyncSession, events: Sequence[Event]
) -> list[tuple[str, str]]:
    """Read-your-writes: fold the events about to be committed into the read models in
    the same transaction (see ``app.platform.uow``); the ``(channel, event type)`` pairs
    to tell after.

    Events are projected only here (no status job follows): an order without a view yet
    raises ``ViewNotReady``, and the transaction rolls back and runs again (a job retries,
    a request answers 503 with ``Retry-After``). Every order's view is written by the
    transaction that places it, so no later event can find it missing.

    A board card is written once per delivery per transaction, from its newest snapshot
    (a delivery created with its rider asked for is one write, not two).
    """
    newest_cards = projector.newest_card_events(events)
    told: list[tuple[str, str]] = []
    for event in events:
        if event.type not in projector.HANDLED:
            continue
        channels = await projector.apply(session, event, card=event.id in newest_cards)
        told += [(channel, event.type) for channel in channels]
    await projector.save_views(session)
    return told


# -- refunds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundFilter:
    customer_id: uuid.UUID | None = None  # None: every customer's (staff)
    reason_code: str | None = None
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _refund_conditions(f: RefundFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if f.customer_id is not None:
        conditions.append(RefundView.customer_id == f.customer_id)
    if f.reason_code:
        conditions.append(RefundView.reason_code == f.reason_code)
    if f.q:
        escaped = f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(RefundView.reason.ilike(f"%{escaped}%", escape="\\"))
    if f.since is not None:
        conditions.append(RefundView.created_at >= f.since)
    if f.until is not None:
        conditions.append(RefundView.created_at < f.until)
    return conditions


async def refund_views(
    session: AsyncSession, f: RefundFilter, limit: int = 1000
) -> list[RefundEntry]:
    rows = await session.scalars(
        select(RefundView)
        .where(*_refund_conditions(f))
        .order_by(RefundView.created_at.desc())
        .limit(limit)
    )
    return [RefundEntry.of(row) for row in rows]


@dataclass(frozen=True)
class ReasonStat:
    """One reason's refunds: money actually paid back apart from money still asked for,
    and cancelled requests (no money moved) counted on their own."""

    reason_code: str
    reason_label: str
    count: int
    #: money paid back (completed refunds)
    amount: int
    refunded: int = 0
    requested: int = 0
    requested_amount: int = 0
    cancelled: int = 0


def _count_of(status: str) -> ColumnElement[int]:
    return func.count().filter(RefundView.status == status)


def _sum_of(status: str) -> ColumnElement[int]:
    return func.coalesce(func.sum(RefundView.amount).filter(RefundView.status == status), 0)


async def refund_stats(session: AsyncSession, f: RefundFilter) -> list[ReasonStat]:
    """Count per reason for the filtered refunds (the lookup's chart), with the money
    refunded, still requested and the cancelled requests apart."""
    rows = await session.execute(
        select(
            RefundView.reason_code,
            func.max(RefundView.reason_label),
            func.count(),
            _sum_of("completed"),
            _count_of("completed"),
            _count_of("requested"),
            _sum_of("requested"),
            _count_of("cancelled"),
        )
        .where(*_refund_conditions(f))
        .group_by(RefundView.reason_code)
        .order_by(func.count().desc(), RefundView.reason_code)
    )
    return [
        ReasonStat(code, label, int(n), int(paid), int(done), int(asked), int(asking), int(off))
        for code, label, n, paid, done, asked, asking, off in rows
    ]


async def refund_view(
    session: AsyncSession, refund_id: uuid.UUID, customer_id: uuid.UUID | None
) -> RefundEntry:
    """One refund; a customer sees only their own (404 otherwise), staff pass None."""
    query = select(RefundView).where(RefundView.refund_id == refund_id)
    if customer_id is not None:
        query = query.where(RefundView.customer_id == customer_id)
    view = await session.scalar(query)
    if view is None:
        raise NotFound(N_("refund not found"))
    return RefundEntry.of(view)


async def any_order_view(session: AsyncSession, order_id: uuid.UUID) -> OrderEntry | None:
    """Staff: any customer's order view (the refund lookup shows its timeline)."""
    view = await session.get(OrderView, order_id)
    return OrderEntry.of(view) if view is not None else None


# -- delivery windows ------------------------------------------------------------------


async def window_of(
    session: AsyncSession, doc: dict[str, object], stage_minutes: dict[str, float]
) -> eta.Window | None:
    if doc.get("status") != "paid":
        return None  # no statistics needed
    return eta.estimate(doc, await stage_stats(session, stage_minutes), utcnow())


async def order_document(
    session: AsyncSession, view: OrderEntry, stage_minutes: dict[str, float]
) -> OrderDocument:
    """The order as pages and the API show it: the view plus its delivery window."""
    return OrderDocument.of(view.doc, await window_of(session, view.doc, stage_minutes))
