"""Ordering API shapes. Bounds live in the schema so OpenAPI documents them too."""

from __future__ import annotations

from typing import Annotated

import msgspec

from app.ordering.models import MAX_LINES, MAX_QTY

Qty = Annotated[int, msgspec.Meta(ge=1, le=MAX_QTY)]
PizzaId = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class OrderItemRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    pizza_id: PizzaId
    qty: Qty


class PlaceOrderRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    items: Annotated[list[OrderItemRequest], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    address: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    card_number: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    coupon_code: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    note: Annotated[str, msgspec.Meta(max_length=300)] | None = None
