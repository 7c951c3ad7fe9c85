"""The order view as the API returns it (the stored document, typed for OpenAPI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from app.status.eta import Window


class OrderItemView(msgspec.Struct, rename="camel"):
    pizza_id: int
    name: str
    qty: int
    unit_price: int


class PaymentView(msgspec.Struct, rename="camel"):
    status: str
    failure_reason: str | None


class TimelineEntry(msgspec.Struct):
    at: datetime
    status: str
    detail: str  # in English
    #: the facts ``detail`` mentions (amount, currency, rider, reason), for other languages
    args: dict[str, Any] = msgspec.field(default_factory=dict)


class EstimatedDelivery(msgspec.Struct, rename="camel"):
    """When the order should reach the customer (ISO-8601), from payment until delivered."""

    earliest: datetime
    latest: datetime
    #: the latest time promised: at payment, or the rider's first estimate when a rider
    #: took the order in the kitchen (``app.status.eta``); ``runningLate`` once the
    #: window passed it, or the kitchen its own promise
    promised_latest: datetime
    running_late: bool


class OrderDocument(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    status: str
    items: list[OrderItemView]
    total_amount: int
    currency: str
    address: str
    created_at: datetime
    payment: PaymentView | None
    delivery: dict[str, Any] | None
    coupon: dict[str, Any] | None
    refund: dict[str, Any] | None
    timeline: list[TimelineEntry]
    discount_amount: int = 0
    phone: str | None = None
    note: str | None = None
    estimated_delivery: EstimatedDelivery | None = None

    @classmethod
    def of(cls, doc: dict[str, Any], window: Window | None = None) -> OrderDocument:
        document = msgspec.convert(doc, cls)
        if window is not None:
            document.estimated_delivery = EstimatedDelivery(
                earliest=window.earliest,
                latest=window.latest,
                promised_latest=window.promised,
                running_late=window.late,
            )
        return document

    @property
    def stage(self) -> str | None:
        """The kitchen or delivery stage a customer follows while the order is paid: the
        delivery's state, or ``queued`` until the kitchen ticket exists."""
        if self.status != "paid":
            return None
        return str(self.delivery["status"]) if self.delivery else "queued"

    @property
    def progress_stage(self) -> str | None:
        """The step the progress bar shows as reached: the stage while paid, delivered
        once the order is fulfilled (or refunded after it was): what ``data-stage`` says,
        so a script waiting for "delivered" sees it."""
        if self.status in ("fulfilled", "refunded"):
            return "delivered"
        return self.stage

    @property
    def shown_status(self) -> str:
        """What the order's badge says: the stage while there is one (never "paid" from
        queued to delivered), else the order's own state."""
        return self.stage or self.status
