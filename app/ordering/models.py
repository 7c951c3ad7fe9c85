"""Ordering: the Order aggregate, its lines and its state machine."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.ordering.events import OrderChanged
from app.platform.aggregate import Aggregate, status_column
from app.platform.db import Base, utcnow
from app.platform.statemachine import StateMachine


class OrderStatus(StrEnum):
    placed = "placed"
    paid = "paid"
    payment_failed = "payment_failed"
    cancelled = "cancelled"
    fulfilled = "fulfilled"
    refunded = "refunded"


ORDER_MACHINE = StateMachine[OrderStatus](
    "order",
    {
        OrderStatus.placed: frozenset(
            {OrderStatus.paid, OrderStatus.payment_failed, OrderStatus.cancelled}
        ),
        OrderStatus.paid: frozenset({OrderStatus.fulfilled, OrderStatus.cancelled}),
        OrderStatus.fulfilled: frozenset({OrderStatus.refunded}),
    },
)

MAX_QTY = 20
MAX_LINES = 30


class Order(Aggregate[OrderStatus, OrderChanged], Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("customer_id", "idempotency_key", name="uq_orders_customer_idempotency"),
        Index("ix_orders_customer_created", "customer_id", "created_at"),
        {"schema": "ordering"},
    )

    MACHINE = ORDER_MACHINE

    status: Mapped[OrderStatus] = status_column(OrderStatus)

    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    total_amount: Mapped[int] = mapped_column(Integer)
    discount_amount: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    coupon_code: Mapped[str | None] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    address: Mapped[str] = mapped_column(String(300))
    phone: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(String(300))
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    #: what the request with that key asked for: the same key with another body is a 422
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def correlation_id(self) -> uuid.UUID:
        return self.id

    def snapshot(self, event: type[OrderChanged], **extra: Any) -> OrderChanged:
        return event(
            order_id=self.id,
            customer_id=self.customer_id,
            status=self.status,
            amount=self.total_amount,
            currency=self.currency,
            version=self.version,
            **extra,
        )


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = {"schema": "ordering"}

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ordering.orders.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    pizza_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    qty: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(Integer)
