"""The status projector: folds events into the read models (order views, board cards).

Every event carries its aggregate's version; a change is applied only when that version
is newer than the one the view has seen, so duplicates and stragglers do nothing and the
projector is idempotent without an inbox. An event for an order whose view does not exist
yet raises ``ViewNotReady``: the transaction that records it rolls back and runs again.

Every event is folded by the unit of work that records it (``app.platform.uow``; the
web and every worker install it), so no status job is sent to project it again: a relay
hop, a job and a transaction fewer per event. ``app.status.tasks.project`` remains for
rows an older release routed to the ``status`` queue, and for dead letters replayed.

``apply`` returns the Redis channels to notify once the transaction has committed.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import msgspec
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy import event as orm_event
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.coupon.events import (
    CouponChanged,
    CouponFlagged,
    CouponIssued,
    CouponRedeemed,
    CouponReinstated,
    CouponRevoked,
)
from app.delivery.events import (
    CourierAssigned,
    CourierRequested,
    DeliveryAdvanced,
    DeliveryCancelled,
    DeliveryChanged,
    DeliveryCreated,
    DeliveryDelivered,
    DeliveryMoveUndone,
    DeliveryReturnCancelled,
    DeliveryReturned,
    DeliveryReturnRequested,
)
from app.ordering.events import (
    OrderCancelled,
    OrderFulfilled,
    OrderPaid,
    OrderPaymentFailed,
    OrderPlaced,
    OrderRefunded,
)
from app.payment.events import (
    PaymentCaptured,
    PaymentChanged,
    PaymentFailed,
    PaymentRefunded,
    PaymentVoided,
)
from app.platform.db import utcnow
from app.platform.driver import Statement
from app.platform.errors import Unavailable
from app.platform.events import DomainEvent, Event
from app.platform.settings import get_settings
from app.refund.events import RefundCancelled, RefundChanged, RefundCompleted, RefundRequested
from app.status import pace
from app.status.eta import KITCHEN, promised_by
from app.status.models import BoardCard, OrderView, RefundView
from app.words import STAGES, step_words

Doc = dict[str, Any]
BOARD_CHANNEL = "board"


class ViewNotReady(Unavailable):
    """The event refers to an order whose view does not exist yet: retry later (a
    transient failure for a job, a 503 for a request)."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"the view of order {order_id} is not there yet", code="view_not_ready")


def order_channel(order_id: Any) -> str:
    return f"order:{order_id}"


def customer_channel(customer_id: Any) -> str:
    return f"customer:{customer_id}"


def _entry(at: datetime, status: str, **args: Any) -> Doc:
    """A timeline step: its words in English (``detail``) and the facts they mention
    (``args``), so a page can say the same in the visitor's language."""
    entry: Doc = {"at": at.isoformat(), "status": status, "detail": str(step_words(status, args))}
    if args:
        entry["args"] = args
    return entry


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _initial_doc(event: Event, placed: OrderPlaced) -> Doc:
    return {
        "id": str(placed.order_id),
        "status": "placed",
        "items": msgspec.to_builtins(placed.items),
        "totalAmount": placed.total_amount,
        "discountAmount": placed.discount_amount,
        "currency": placed.currency,
        "address": placed.address,
        "phone": placed.phone,
        "note": placed.note,
        "customerName": placed.customer_name,
        "createdAt": event.occurred_at.isoformat(),
        "payment": {"status": "pending", "failureReason": None},
        "delivery": None,
        "coupon": None,
        "refund": None,
        "timeline": [_entry(event.occurred_at, "placed")],
    }


# -- how each event changes the order document -----------------------------------------


def _payment_changed(doc: Doc, event: Event) -> None:
    payment = event.as_(PaymentChanged)
    doc["payment"] = {"status": payment.status, "failureReason": payment.failure_reason}


def _payment_voided(doc: Doc, event: Event) -> None:
    """A cancelled order's payment: the timeline says so after "Paid ₩…" (a charge the
    provider voided) or after "Cancelled" alone (nothing was charged), so no one reads
    "Paid" as money taken."""
    _payment_changed(doc, event)
    payment = event.as_(PaymentChanged)
    charged = any(step["status"] == "paid" for step in doc["timeline"])
    args = {"amount": payment.amount, "currency": payment.currency} if charged else {}
    doc["timeline"].append(_entry(event.occurred_at, "payment_voided", **args))


def _order_paid(doc: Doc, event: Event) -> None:
    paid = event.as_(OrderPaid)
    doc["status"] = "paid"
    doc["timeline"].append(
        _entry(event.occurred_at, "paid", amount=paid.amount, currency=paid.currency)
    )


def _order_payment_failed(doc: Doc, event: Event) -> None:
    reason = event.as_(OrderPaymentFailed).reason
    doc["status"] = "payment_failed"
    args = {"reason": reason} if reason else {}
    doc["timeline"].append(_entry(event.occurred_at, "payment_failed", **args))


def _order_cancelled(doc: Doc, event: Event) -> None:
    doc["status"] = "cancelled"
    doc["timeline"].append(_entry(event.occurred_at, "cancelled"))


def _order_fulfilled(doc: Doc, event: Event) -> None:
    doc["status"] = "fulfilled"


def _delivery_changed(doc: Doc, event: Event) -> None:
    d = event.as_(DeliveryChanged)
    shown = doc.get("delivery") or {}
    before = shown.get("status")
    first_eta, given_at = shown.get("firstPartnerEta"), shown.get("firstPartnerEtaAt")
    if first_eta is None and d.partner_eta is not None and d.status in KITCHEN:
        first_eta, given_at = _iso(d.partner_eta), _iso(event.occurred_at)
    doc["delivery"] = {
        "id": str(d.delivery_id),
        "status": d.status,
        "courierStatus": d.courier_status,
        "rider": d.rider,
        "partnerEta": _iso(d.partner_eta),
        "firstPartnerEta": first_eta,
        "firstPartnerEtaAt": given_at,
    }
    if d.history is not None:  # every stage reached, even ones whose events we never saw
        kept = [e for e in doc["timeline"] if e["status"] not in STAGES]
        doc["timeline"] = kept + [
            _entry(s.at, s.status, **_stage_args(s.status, d)) for s in d.history
        ]
    elif d.status != before and d.status in STAGES:
        doc["timeline"].append(_entry(event.occurred_at, d.status, **_stage_args(d.status, d)))


def _stage_args(status: str, d: DeliveryChanged) -> Doc:
    if status == "out_for_delivery" and d.rider:
        return {"rider": d.rider}
    return {}


def _coupon_changed(doc: Doc, event: Event) -> None:
    c = event.as_(CouponChanged)
    doc["coupon"] = {
        "code": c.code,
        "status": c.status,
        "discount": c.discount,
        "currency": c.currency or doc["currency"],
        "flagged": c.flagged,
    }


def _return_changed(doc: Doc, event: Event) -> None:
    """The return trip of a refund: same delivery, its own timeline words."""
    d = event.as_(DeliveryChanged)
    doc["delivery"] = {
        "id": str(d.delivery_id),
        "status": d.status,
        "courierStatus": d.courier_status,
        "rider": d.rider,
    }
    doc["timeline"].append(_entry(event.occurred_at, RETURN_STEPS[event.type]))


RETURN_STEPS = {
    DeliveryReturnRequested.TYPE: "return_requested",
    DeliveryReturned.TYPE: "returned",
    DeliveryReturnCancelled.TYPE: "return_cancelled",
}


def _refund_changed(doc: Doc, event: Event) -> None:
    """An order may have several refunds over time (one withdrawn, then another): the
    view shows the newest, and the timeline tells every one of them."""
    r = event.as_(RefundChanged)
    shown = doc.get("refund")
    newer_shown = (
        shown is not None
        and shown["id"] != str(r.refund_id)
        and "createdAt" in shown
        and datetime.fromisoformat(shown["createdAt"]) > r.created_at
    )
    if not newer_shown:
        doc["refund"] = {
            "id": str(r.refund_id),
            "status": r.status,
            "reasonCode": r.reason_code,
            "reasonLabel": r.reason_label,
            "reason": r.reason,
            "amount": r.amount,
            "createdAt": r.created_at.isoformat(),
        }
    steps: dict[str, tuple[str, Doc]] = {
        "requested": ("refund_requested", {"reason": r.reason_label}),
        "completed": ("refund_completed", {"amount": r.amount, "currency": r.currency}),
        "cancelled": ("refund_cancelled", {}),
    }
    step, args = steps[r.status]
    doc["timeline"].append(_entry(event.occurred_at, step, **args))


def _order_refunded(doc: Doc, event: Event) -> None:
    doc["status"] = "refunded"


#: event -> (source aggregate, how the order document changes)
CHANGES: dict[type[DomainEvent], tuple[str, Callable[[Doc, Event], None]]] = {
    PaymentCaptured: ("payment", _payment_changed),
    PaymentFailed: ("payment", _payment_changed),
    PaymentVoided: ("payment", _payment_voided),
    OrderPaid: ("order", _order_paid),
    OrderPaymentFailed: ("order", _order_payment_failed),
    OrderCancelled: ("order", _order_cancelled),
    OrderFulfilled: ("order", _order_fulfilled),
    DeliveryCreated: ("delivery", _delivery_changed),
    DeliveryAdvanced: ("delivery", _delivery_changed),
    DeliveryMoveUndone: ("delivery", _delivery_changed),
    DeliveryDelivered: ("delivery", _delivery_changed),
    DeliveryCancelled: ("delivery", _delivery_changed),
    CourierRequested: ("delivery", _delivery_changed),
    CourierAssigned: ("delivery", _delivery_changed),
    CouponIssued: ("coupon", _coupon_changed),
    CouponRedeemed: ("coupon", _coupon_changed),
    CouponReinstated: ("coupon", _coupon_changed),
    CouponRevoked: ("coupon", _coupon_changed),
    CouponFlagged: ("coupon", _coupon_changed),
    DeliveryReturnRequested: ("delivery", _return_changed),
    DeliveryReturned: ("delivery", _return_changed),
    DeliveryReturnCancelled: ("delivery", _return_changed),
    PaymentRefunded: ("payment", _payment_changed),
    OrderRefunded: ("order", _order_refunded),
    RefundRequested: ("refund", _refund_changed),
    RefundCompleted: ("refund", _refund_changed),
    RefundCancelled: ("refund", _refund_changed),
}
#: the same, by the name in the outbox
ORDER_CHANGES = {event.TYPE: change for event, change in CHANGES.items()}

DELIVERY_EVENTS = frozenset(t for t, (source, _) in ORDER_CHANGES.items() if source == "delivery")
REFUND_EVENTS = frozenset(t for t, (source, _) in ORDER_CHANGES.items() if source == "refund")
REFUNDS_CHANNEL = "refunds"
#: every event the projector folds into the read models
PROJECTED: tuple[type[DomainEvent], ...] = tuple(dict.fromkeys((OrderPlaced, *CHANGES)))
HANDLED = frozenset(event.TYPE for event in PROJECTED)


async def apply(session: AsyncSession, event: Event, *, card: bool = True) -> list[str]:
    """Apply ``event`` to the read models; return the channels to notify after commit.
    ``card=False``: a newer snapshot of its delivery follows in the same transaction and
    writes the board card (``newest_card_events``)."""
    channels: list[str] = []
    if event.type == OrderPlaced.TYPE:
        placed = event.as_(OrderPlaced)
        _create_view(session, event, placed)
        return [order_channel(placed.order_id), customer_channel(placed.customer_id)]
    # the order's view, locked, read once: the board card copies details from it too
    view = await _locked_view(session, event)
    # the board and the refunds page are told of every snapshot, even one the stored
    # card already beat (rare: an older one late): they re-read and find nothing new,
    # where asking the upsert whether it wrote would be a round trip of its own
    if card and event.type in DELIVERY_EVENTS:
        _save_card(session, event, view.doc)
        channels.append(BOARD_CHANNEL)
    if event.type in REFUND_EVENTS:
        _save_refund(session, event)
        channels.append(REFUNDS_CHANNEL)
    if _change_view(view, event):
        if event.type == OrderPaid.TYPE and "promisedBy" not in view.doc:
            await _keep_promise(session, view.doc, event.occurred_at)
        view_customer = event.payload.get("customerId")
        channels.append(order_channel(event.payload["orderId"]))
        if view_customer:
            channels.append(customer_channel(view_customer))
    return channels


async def _keep_promise(session: AsyncSession, doc: Doc, paid_at: datetime) -> None:
    """The latest delivery time promised at payment, kept in the view (and copied to the
    board card): computed again on every render from the statistics of the moment, it
    moved with every delivery, and waiting orders turned "late" with nothing happening."""
    stats = await pace.stage_stats(session, get_settings().shop.stage_minutes)
    doc["promisedBy"] = promised_by(paid_at, stats).isoformat()


def newest_card_events(events: Sequence[Event]) -> set[uuid.UUID]:
    """The ids of the events, among ``events``, that carry each delivery's newest
    snapshot: the only ones whose board card needs writing (a card is the snapshot)."""
    newest: dict[str, Event] = {}
    for event in events:
        if event.type in DELIVERY_EVENTS:
            seen = newest.get(event.aggregate_id)
            if seen is None or int(event.payload["version"]) >= int(seen.payload["version"]):
                newest[event.aggregate_id] = event
    return {event.id for event in newest.values()}


#: built once, the values bound per call (inline values cost a cache key walk each time)
#: (Core statements on the tables, not the ORM's bulk insert: the same SQL, a third of the CPU)
_VIEWS = cast(Table, OrderView.__table__)
#: read, written and created for (nearly) every event: on the driver (``app.platform.driver``)
_LOCK_VIEW = Statement(
    select(_VIEWS.c.version, _VIEWS.c.sources, _VIEWS.c.doc)
    .where(_VIEWS.c.order_id == bindparam("order_id"))
    .with_for_update()
)
_SAVE_VIEW = Statement(
    update(_VIEWS)
    .where(_VIEWS.c.order_id == bindparam("view_order_id"))
    .values(
        version=bindparam("view_version"),
        sources=bindparam("view_sources", type_=_VIEWS.c.sources.type),
        doc=bindparam("view_doc", type_=_VIEWS.c.doc.type),
        updated_at=bindparam("view_updated_at", type_=_VIEWS.c.updated_at.type),
    )
)
#: ``session.info`` key: (the transaction, the views it locked by order id)
LOCKED_VIEWS = "status.locked_views"


@dataclass
class LockedView:
    """An order's view as this transaction read it under its row lock, changed in place
    by the events applied to it and written back once by ``save_views`` (plain values,
    not an ORM object: no change tracking, no copy of the document per event)."""

    order_id: uuid.UUID
    version: int
    sources: dict[str, int]
    doc: Doc
    changed: bool = False


async def _locked_view(session: AsyncSession, event: Event) -> LockedView:
    """The view of the event's order, locked until commit; ``ViewNotReady`` (retry later)
    while the order's first event has not been projected.

    Read once per transaction: the next event of the same order in it (the order paid
    with its payment's capture) finds it locked already, and the changes of both are
    written together by ``save_views``."""
    order_id = uuid.UUID(event.payload["orderId"])
    views = _views_of(session)
    if order_id in views:
        return views[order_id]
    row = await _LOCK_VIEW.fetchrow(session, {"order_id": order_id})
    if row is None:
        raise ViewNotReady(str(order_id))
    view = views[order_id] = LockedView(order_id, row["version"], row["sources"], row["doc"])
    return view


def _views_of(session: AsyncSession) -> dict[uuid.UUID, LockedView]:
    """The views the session's current transaction has locked, kept in ``session.info``
    (a new transaction starts with none)."""
    views = _held_views(session.sync_session)
    if views is None:  # a new transaction: nothing of the last one is locked
        views = {}
        session.info[LOCKED_VIEWS] = (session.sync_session.get_transaction(), views)
    return views


def _held_views(session: Session) -> dict[uuid.UUID, LockedView] | None:
    """The views locked by the session's current transaction; None if it locked none."""
    held, views = session.info.get(LOCKED_VIEWS) or (None, None)
    return cast(dict[uuid.UUID, LockedView], views) if held is session.get_transaction() else None


async def save_views(session: AsyncSession) -> None:
    """Write the views the transaction's events changed (one statement for all of them);
    call it after the last ``apply`` of the transaction, before the commit."""
    changed = [view for view in _views_of(session).values() if view.changed]
    if not changed:
        return
    now = utcnow()
    _SAVE_VIEW.add(  # with the commit, or the transaction's next statement
        session,
        [
            {
                "view_order_id": view.order_id,
                "view_version": view.version,
                "view_sources": view.sources,
                "view_doc": view.doc,
                "view_updated_at": now,
            }
            for view in changed
        ],
    )
    for view in changed:
        view.changed = False


@orm_event.listens_for(Session, "before_commit")
def _unsaved_views(session: Session) -> None:
    """Refuse to commit a view changed by ``apply`` but never written (``save_views``
    forgotten): the events would be committed and the customer's page never told."""
    if any(view.changed for view in (_held_views(session) or {}).values()):
        raise RuntimeError("order views changed but not saved: call projector.save_views")


def _change_view(view: LockedView, event: Event) -> bool:
    source, change = ORDER_CHANGES[event.type]
    version = int(event.payload["version"])
    key = source_key(source, event.aggregate_id)
    if version <= _seen(view.sources, source, key):
        return False
    # the document is this transaction's own copy (read under its lock): changed in place
    change(view.doc, event)
    # Events of different aggregates are projected concurrently; the timeline tells them
    # in the order they happened, not the order they were projected.
    view.doc["timeline"].sort(key=lambda entry: entry["at"])
    view.sources[key] = version
    view.version += 1
    view.changed = True
    return True


def source_key(source: str, aggregate_id: str) -> str:
    """Versions are per aggregate: two refunds of one order each count from 1."""
    return f"{source}:{aggregate_id}"


def _seen(sources: dict[str, int], source: str, key: str) -> int:
    """The version of this aggregate the view has applied. Views written before versions
    were kept per aggregate id have one entry per source; it still holds for the sources
    an order has only one of (never for refunds: that was the bug it fixes)."""
    if key in sources:
        return sources[key]
    return 0 if source == "refund" else sources.get(source, 0)


#: ``session.info`` key: the order views this session created, as written (see
#: ``created_view``)
CREATED_VIEWS = "status.created_views"


#: added (``Statement.add``): the placement's view is written with its order, in one
#: statement; a view that exists already (an event projected twice) stays as it is
_NEW_VIEW = Statement(insert(_VIEWS).on_conflict_do_nothing())


def _create_view(session: AsyncSession, event: Event, placed: OrderPlaced) -> None:
    values = {
        "order_id": placed.order_id,
        "customer_id": placed.customer_id,
        "version": 1,
        "sources": {source_key("order", event.aggregate_id): placed.version},
        "doc": _initial_doc(event, placed),
        "created_at": event.occurred_at,
        "updated_at": utcnow(),
    }
    _NEW_VIEW.add(session, [values])
    session.info.setdefault(CREATED_VIEWS, {})[placed.order_id] = values


def created_view(session: AsyncSession, order_id: uuid.UUID) -> dict[str, Any] | None:
    """The view of ``order_id`` as this session wrote it (once; None when it wrote none):
    the placement answers with it instead of reading back what it just wrote. Its insert
    does nothing when the view exists (an ``OrderPlaced`` projected again, never a new
    order's): only the placing session asks."""
    created: dict[uuid.UUID, dict[str, Any]] = session.info.get(CREATED_VIEWS) or {}
    return created.pop(order_id, None)


def _save_card(session: AsyncSession, event: Event, doc: dict[str, Any]) -> None:
    """Insert or replace the board card when this snapshot is newer than the stored one,
    with the transaction's next statement or its commit (``Statement.add``)."""
    d = event.as_(DeliveryChanged)
    values = {
        "delivery_id": d.delivery_id,
        "order_id": d.order_id,
        "status": d.status,
        "courier_status": d.courier_status,
        "rider": d.rider,
        "items": event.payload["items"],
        "address": d.address,
        "paid_at": d.paid_at,
        "delivered_at": d.delivered_at,
        "version": d.version,
        "updated_at": event.occurred_at,
        "history": event.payload.get("history") or [],
        **_card_details(doc),
    }
    _newer_snapshot(BoardCard, "delivery_id", tuple(values)).add(session, [values])


def _card_details(doc: dict[str, Any]) -> dict[str, Any]:
    """Who ordered, how to reach them, what they asked for, what was promised: from the
    order's own view."""
    promised = doc.get("promisedBy")
    return {
        "promised_by": datetime.fromisoformat(promised) if promised else None,
        "customer_name": doc.get("customerName"),
        "phone": doc.get("phone"),
        "note": doc.get("note"),
        "total_amount": doc.get("totalAmount"),
        "currency": doc.get("currency"),
    }


def _save_refund(session: AsyncSession, event: Event) -> None:
    """The refunds page's row, as ``_save_card`` saves the board's."""
    r = event.as_(RefundChanged)
    values = {
        "refund_id": r.refund_id,
        "order_id": r.order_id,
        "customer_id": r.customer_id,
        "status": r.status,
        "reason_code": r.reason_code,
        "reason_label": r.reason_label or r.reason_code,
        "reason": r.reason,
        "amount": r.amount,
        "currency": r.currency,
        "cancelled_by": r.cancelled_by,
        "cancel_note": r.cancel_note,
        "version": r.version,
        "created_at": r.created_at,
        "updated_at": event.occurred_at,
    }
    _newer_snapshot(RefundView, "refund_id", tuple(values)).add(session, [values])


@functools.cache
def _newer_snapshot(
    model: type[BoardCard] | type[RefundView], key: str, columns: tuple[str, ...]
) -> Statement:
    """``INSERT … ON CONFLICT (key) DO UPDATE … WHERE stored version < new version``,
    with a bound parameter per column: built once per set of columns, not per event
    (building the ``excluded`` columns took a few per cent of a worker's CPU)."""
    table = cast(Table, model.__table__)  # Core, not the ORM's bulk insert: see _NEW_VIEW
    stmt = insert(table).values({column: bindparam(column) for column in columns})
    return Statement(
        stmt.on_conflict_do_update(
            index_elements=[key],
            set_={column: stmt.excluded[column] for column in columns if column != key},
            where=table.c.version < stmt.excluded.version,
        )
    )
