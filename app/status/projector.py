"""The status projector: folds events into the order view.

Every event carries its aggregate's version; a change is applied only when that version
is newer than the one the view has seen, so duplicates and stragglers do nothing and the
projector is idempotent without an inbox. Events that arrive before the view exists raise
``ViewNotReady`` and the job is retried.
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
from app.status.models import OrderView

Doc = dict[str, Any]


class ViewNotReady(Exception):
    """The event refers to an order whose view does not exist yet: retry later."""


def _timeline_entry(at: datetime, status: str, detail: str) -> Doc:
    return {"at": at.isoformat(), "status": status, "detail": detail}


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency}"


def _initial_doc(event: Event) -> Doc:
    p = event.payload
    return {
        "id": p["orderId"],
        "status": "placed",
        "items": p["items"],
        "totalAmount": p["totalAmount"],
        "currency": p["currency"],
        "address": p["address"],
        "createdAt": event.occurred_at.isoformat(),
        "payment": {"status": "pending", "failureReason": None},
        "delivery": None,
        "coupon": None,
        "refund": None,
        "timeline": [_timeline_entry(event.occurred_at, "placed", "Order placed")],
    }


def _payment_changed(doc: Doc, event: Event) -> None:
    doc["payment"] = {
        "status": event.payload["status"],
        "failureReason": event.payload.get("failureReason"),
    }


def _order_paid(doc: Doc, event: Event) -> None:
    doc["status"] = "paid"
    detail = f"Paid {_money(event.payload['amount'], event.payload['currency'])}"
    doc["timeline"].append(_timeline_entry(event.occurred_at, "paid", detail))


def _order_payment_failed(doc: Doc, event: Event) -> None:
    doc["status"] = "payment_failed"
    reason = event.payload.get("reason") or "The payment was declined."
    doc["timeline"].append(_timeline_entry(event.occurred_at, "payment_failed", reason))


#: event type -> (source aggregate, how the document changes)
CHANGES: dict[str, tuple[str, Callable[[Doc, Event], None]]] = {
    "PaymentCaptured": ("payment", _payment_changed),
    "PaymentFailed": ("payment", _payment_changed),
    "OrderPaid": ("order", _order_paid),
    "OrderPaymentFailed": ("order", _order_payment_failed),
}

HANDLED = ("OrderPlaced", *CHANGES)


async def apply(session: AsyncSession, event: Event) -> uuid.UUID | None:
    """Apply ``event`` to its order view; return the order id when the view changed."""
    order_id = uuid.UUID(event.payload["orderId"])
    if event.type == "OrderPlaced":
        return await _create(session, order_id, event)
    source, change = CHANGES[event.type]
    view = await session.scalar(
        select(OrderView).where(OrderView.order_id == order_id).with_for_update()
    )
    if view is None:
        raise ViewNotReady(str(order_id))
    version = int(event.payload["version"])
    if version <= view.sources.get(source, 0):
        return None
    doc = copy.deepcopy(view.doc)
    change(doc, event)
    view.doc = doc
    view.sources = {**view.sources, source: version}
    view.version += 1
    view.updated_at = utcnow()
    return order_id


async def _create(session: AsyncSession, order_id: uuid.UUID, event: Event) -> uuid.UUID | None:
    created = await session.scalar(
        insert(OrderView)
        .values(
            order_id=order_id,
            customer_id=uuid.UUID(event.payload["customerId"]),
            version=1,
            sources={"order": int(event.payload["version"]), "payment": 1},
            doc=_initial_doc(event),
            created_at=event.occurred_at,
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(OrderView.order_id)
    )
    return created
