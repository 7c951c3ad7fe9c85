"""The status projector: folds events into the read models (order views, board cards).

Every event carries its aggregate's version; a change is applied only when that version
is newer than the one the view has seen, so duplicates and stragglers do nothing and the
projector is idempotent without an inbox. An event for an order whose view does not exist
yet raises ``ViewNotReady`` and the job is retried.

``apply`` returns the Redis channels to notify once the transaction has committed.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.db import utcnow
from app.platform.events import Event
from app.status.models import BoardCard, OrderView, RefundView
from app.words import STAGES, step_words

Doc = dict[str, Any]
BOARD_CHANNEL = "board"


class ViewNotReady(Exception):
    """The event refers to an order whose view does not exist yet: retry later."""


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


def _initial_doc(event: Event) -> Doc:
    p = event.payload
    return {
        "id": p["orderId"],
        "status": "placed",
        "items": p["items"],
        "totalAmount": p["totalAmount"],
        "discountAmount": p.get("discountAmount", 0),
        "currency": p["currency"],
        "address": p["address"],
        "phone": p.get("phone"),
        "note": p.get("note"),
        "customerName": p.get("customerName"),
        "createdAt": event.occurred_at.isoformat(),
        "payment": {"status": "pending", "failureReason": None},
        "delivery": None,
        "coupon": None,
        "refund": None,
        "timeline": [_entry(event.occurred_at, "placed")],
    }


# -- how each event changes the order document -----------------------------------------


def _payment_changed(doc: Doc, event: Event) -> None:
    doc["payment"] = {
        "status": event.payload["status"],
        "failureReason": event.payload.get("failureReason"),
    }


def _order_paid(doc: Doc, event: Event) -> None:
    doc["status"] = "paid"
    amount, currency = event.payload["amount"], event.payload["currency"]
    doc["timeline"].append(_entry(event.occurred_at, "paid", amount=amount, currency=currency))


def _order_payment_failed(doc: Doc, event: Event) -> None:
    doc["status"] = "payment_failed"
    reason = event.payload.get("reason")
    args = {"reason": reason} if reason else {}
    doc["timeline"].append(_entry(event.occurred_at, "payment_failed", **args))


def _order_cancelled(doc: Doc, event: Event) -> None:
    doc["status"] = "cancelled"
    doc["timeline"].append(_entry(event.occurred_at, "cancelled"))


def _order_fulfilled(doc: Doc, event: Event) -> None:
    doc["status"] = "fulfilled"


def _delivery_changed(doc: Doc, event: Event) -> None:
    p = event.payload
    before = (doc.get("delivery") or {}).get("status")
    doc["delivery"] = {
        "id": p["deliveryId"],
        "status": p["status"],
        "courierStatus": p["courierStatus"],
        "rider": p.get("rider"),
        "partnerEta": p.get("partnerEta"),
    }
    history = p.get("history")
    if history is not None:  # every stage reached, even ones whose events we never saw
        kept = [e for e in doc["timeline"] if e["status"] not in STAGES]
        doc["timeline"] = kept + [
            _entry(datetime.fromisoformat(s["at"]), s["status"], **_stage_args(s["status"], p))
            for s in history
        ]
    elif p["status"] != before and p["status"] in STAGES:
        args = _stage_args(p["status"], p)
        doc["timeline"].append(_entry(event.occurred_at, p["status"], **args))


def _stage_args(status: str, p: Doc) -> Doc:
    if status == "out_for_delivery" and p.get("rider"):
        return {"rider": p["rider"]}
    return {}


def _coupon_changed(doc: Doc, event: Event) -> None:
    p = event.payload
    doc["coupon"] = {
        "code": p["code"],
        "status": p["status"],
        "discount": p["discount"],
        "currency": p.get("currency", doc["currency"]),
        "flagged": p.get("flagged"),
    }


def _return_changed(doc: Doc, event: Event) -> None:
    """The return trip of a refund: same delivery, its own timeline words."""
    p = event.payload
    doc["delivery"] = {
        "id": p["deliveryId"],
        "status": p["status"],
        "courierStatus": p["courierStatus"],
        "rider": p.get("rider"),
    }
    doc["timeline"].append(_entry(event.occurred_at, RETURN_STEPS[event.type]))


RETURN_STEPS = {
    "DeliveryReturnRequested": "return_requested",
    "DeliveryReturned": "returned",
    "DeliveryReturnCancelled": "return_cancelled",
}


def _refund_changed(doc: Doc, event: Event) -> None:
    """An order may have several refunds over time (one withdrawn, then another): the
    view shows the newest, and the timeline tells every one of them."""
    p = event.payload
    shown = doc.get("refund")
    newer_shown = (
        shown is not None
        and shown["id"] != p["refundId"]
        and shown.get("createdAt", "") > p["createdAt"]
    )
    if not newer_shown:
        doc["refund"] = {
            "id": p["refundId"],
            "status": p["status"],
            "reasonCode": p["reasonCode"],
            "reasonLabel": p.get("reasonLabel"),
            "reason": p["reason"],
            "amount": p["amount"],
            "createdAt": p["createdAt"],
        }
    step, args = {
        "requested": ("refund_requested", {"reason": p.get("reasonLabel")}),
        "completed": ("refund_completed", {"amount": p["amount"], "currency": p["currency"]}),
        "cancelled": ("refund_cancelled", {}),
    }[p["status"]]
    doc["timeline"].append(_entry(event.occurred_at, step, **args))


def _order_refunded(doc: Doc, event: Event) -> None:
    doc["status"] = "refunded"


#: event type -> (source aggregate, how the order document changes)
ORDER_CHANGES: dict[str, tuple[str, Callable[[Doc, Event], None]]] = {
    "PaymentCaptured": ("payment", _payment_changed),
    "PaymentFailed": ("payment", _payment_changed),
    "PaymentVoided": ("payment", _payment_changed),
    "OrderPaid": ("order", _order_paid),
    "OrderPaymentFailed": ("order", _order_payment_failed),
    "OrderCancelled": ("order", _order_cancelled),
    "OrderFulfilled": ("order", _order_fulfilled),
    "DeliveryCreated": ("delivery", _delivery_changed),
    "DeliveryAdvanced": ("delivery", _delivery_changed),
    "DeliveryMoveUndone": ("delivery", _delivery_changed),
    "DeliveryDelivered": ("delivery", _delivery_changed),
    "DeliveryCancelled": ("delivery", _delivery_changed),
    "CourierRequested": ("delivery", _delivery_changed),
    "CourierAssigned": ("delivery", _delivery_changed),
    "CouponIssued": ("coupon", _coupon_changed),
    "CouponRedeemed": ("coupon", _coupon_changed),
    "CouponReinstated": ("coupon", _coupon_changed),
    "CouponRevoked": ("coupon", _coupon_changed),
    "CouponFlagged": ("coupon", _coupon_changed),
    "DeliveryReturnRequested": ("delivery", _return_changed),
    "DeliveryReturned": ("delivery", _return_changed),
    "DeliveryReturnCancelled": ("delivery", _return_changed),
    "PaymentRefunded": ("payment", _payment_changed),
    "OrderRefunded": ("order", _order_refunded),
    "RefundRequested": ("refund", _refund_changed),
    "RefundCompleted": ("refund", _refund_changed),
    "RefundCancelled": ("refund", _refund_changed),
}

DELIVERY_EVENTS = frozenset(t for t, (source, _) in ORDER_CHANGES.items() if source == "delivery")
REFUND_EVENTS = frozenset(t for t, (source, _) in ORDER_CHANGES.items() if source == "refund")
REFUNDS_CHANNEL = "refunds"
HANDLED = ("OrderPlaced", *ORDER_CHANGES)


async def apply(session: AsyncSession, event: Event) -> list[str]:
    """Apply ``event`` to the read models; return the channels to notify after commit."""
    channels: list[str] = []
    if event.type == "OrderPlaced":
        if await _create_view(session, event):
            channels += [
                order_channel(event.payload["orderId"]),
                customer_channel(event.payload["customerId"]),
            ]
        return channels
    # the order's view, locked, read once: the board card copies details from it too
    view = await _locked_view(session, event)
    if event.type in DELIVERY_EVENTS and await _upsert_card(session, event, view.doc):
        channels.append(BOARD_CHANNEL)
    if event.type in REFUND_EVENTS and await _upsert_refund(session, event):
        channels.append(REFUNDS_CHANNEL)
    if _change_view(view, event):
        view_customer = event.payload.get("customerId")
        channels.append(order_channel(event.payload["orderId"]))
        if view_customer:
            channels.append(customer_channel(view_customer))
    return channels


async def _locked_view(session: AsyncSession, event: Event) -> OrderView:
    """The view of the event's order, locked until commit; ``ViewNotReady`` (retry later)
    while the order's first event has not been projected."""
    order_id = uuid.UUID(event.payload["orderId"])
    view = await session.scalar(
        select(OrderView).where(OrderView.order_id == order_id).with_for_update()
    )
    if view is None:
        raise ViewNotReady(str(order_id))
    return view


def _change_view(view: OrderView, event: Event) -> bool:
    source, change = ORDER_CHANGES[event.type]
    version = int(event.payload["version"])
    key = source_key(source, event.aggregate_id)
    if version <= _seen(view.sources, source, key):
        return False
    doc = copy.deepcopy(view.doc)
    change(doc, event)
    # Events of different aggregates are projected concurrently; the timeline tells them
    # in the order they happened, not the order they were projected.
    doc["timeline"].sort(key=lambda entry: entry["at"])
    view.doc = doc
    view.sources = {**view.sources, key: version}
    view.version += 1
    view.updated_at = utcnow()
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


async def _create_view(session: AsyncSession, event: Event) -> bool:
    created = await session.scalar(
        insert(OrderView)
        .values(
            order_id=uuid.UUID(event.payload["orderId"]),
            customer_id=uuid.UUID(event.payload["customerId"]),
            version=1,
            sources={source_key("order", event.aggregate_id): int(event.payload["version"])},
            doc=_initial_doc(event),
            created_at=event.occurred_at,
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(OrderView.order_id)
    )
    return created is not None


async def _upsert_card(session: AsyncSession, event: Event, doc: dict[str, Any]) -> bool:
    """Insert or replace the board card when this snapshot is newer than the stored one."""
    p = event.payload
    values = {
        "delivery_id": uuid.UUID(p["deliveryId"]),
        "order_id": uuid.UUID(p["orderId"]),
        "status": p["status"],
        "courier_status": p["courierStatus"],
        "rider": p.get("rider"),
        "items": p["items"],
        "address": p["address"],
        "paid_at": datetime.fromisoformat(p["paidAt"]) if p.get("paidAt") else None,
        "version": int(p["version"]),
        "updated_at": event.occurred_at,
        "history": p.get("history") or [],
        **_card_details(doc),
    }
    stmt = insert(BoardCard).values(**values)
    upsert = stmt.on_conflict_do_update(
        index_elements=[BoardCard.delivery_id],
        set_={k: stmt.excluded[k] for k in values if k != "delivery_id"},
        where=BoardCard.version < stmt.excluded.version,
    )
    return (await session.scalar(upsert.returning(BoardCard.delivery_id))) is not None


def _card_details(doc: dict[str, Any]) -> dict[str, Any]:
    """Who ordered, how to reach them, what they asked for: from the order's own view."""
    return {
        "customer_name": doc.get("customerName"),
        "phone": doc.get("phone"),
        "note": doc.get("note"),
        "total_amount": doc.get("totalAmount"),
        "currency": doc.get("currency"),
    }


async def _upsert_refund(session: AsyncSession, event: Event) -> bool:
    p = event.payload
    values = {
        "refund_id": uuid.UUID(p["refundId"]),
        "order_id": uuid.UUID(p["orderId"]),
        "customer_id": uuid.UUID(p["customerId"]),
        "status": p["status"],
        "reason_code": p["reasonCode"],
        "reason_label": p.get("reasonLabel") or p["reasonCode"],
        "reason": p["reason"],
        "amount": p["amount"],
        "currency": p["currency"],
        "cancelled_by": p.get("cancelledBy"),
        "cancel_note": p.get("cancelNote"),
        "version": int(p["version"]),
        "created_at": datetime.fromisoformat(p["createdAt"]),
        "updated_at": event.occurred_at,
    }
    stmt = insert(RefundView).values(**values)
    upsert = stmt.on_conflict_do_update(
        index_elements=[RefundView.refund_id],
        set_={k: stmt.excluded[k] for k in values if k != "refund_id"},
        where=RefundView.version < stmt.excluded.version,
    )
    return (await session.scalar(upsert.returning(RefundView.refund_id))) is not None
