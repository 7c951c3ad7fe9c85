"""The events the ordering context emits (its contract with the other contexts)."""

from __future__ import annotations

import uuid

import msgspec

from app.platform.events import DomainEvent


class OrderItem(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One line of an order as the other contexts see it (the kitchen ticket, the view)."""

    pizza_id: int
    name: str
    qty: int
    unit_price: int


class OrderPlaced(DomainEvent):
    """A customer placed an order; payment charges the card."""

    AGGREGATE = "order"

    order_id: uuid.UUID
    customer_id: uuid.UUID
    items: list[OrderItem]
    total_amount: int
    currency: str
    address: str
    discount_amount: int = 0
    coupon_code: str | None = None
    phone: str | None = None
    note: str | None = None
    customer_name: str | None = None


class OrderChanged(DomainEvent):
    """The shape every later order event shares: where the order stands now."""

    ABSTRACT = True
    AGGREGATE = "order"

    order_id: uuid.UUID
    customer_id: uuid.UUID
    #: an ``OrderStatus`` value
    status: str
    amount: int
    currency: str


class OrderPaid(OrderChanged):
    """The card was charged: the kitchen may start (delivery opens a ticket)."""

    items: list[OrderItem]
    address: str


class OrderPaymentFailed(OrderChanged):
    PROJECTION_ONLY = True

    reason: str | None = None


class OrderCancelled(OrderChanged):
    """The customer cancelled before the kitchen started: payment voids the charge."""


class OrderFulfilled(OrderChanged):
    PROJECTION_ONLY = True


class OrderRefunded(OrderChanged):
    PROJECTION_ONLY = True


EVENTS = (OrderPlaced, OrderPaid, OrderPaymentFailed, OrderCancelled, OrderFulfilled, OrderRefunded)
