"""The order view as the API returns it (the stored document, typed for OpenAPI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec


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
    detail: str


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

    @classmethod
    def of(cls, doc: dict[str, Any]) -> OrderDocument:
        return msgspec.convert(doc, cls)
