"""Payment: one payment per order and its state machine."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, String, false
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.payment.events import PaymentChanged
from app.platform.aggregate import Aggregate, status_column
from app.platform.db import Base, utcnow
from app.platform.statemachine import StateMachine


class PaymentStatus(StrEnum):
    pending = "pending"
    captured = "captured"
    failed = "failed"
    voided = "voided"
    refunded = "refunded"


PAYMENT_MACHINE = StateMachine[PaymentStatus](
    "payment",
    {
        # pending → voided: the order was cancelled before the card was charged.
        PaymentStatus.pending: frozenset(
            {PaymentStatus.captured, PaymentStatus.failed, PaymentStatus.voided}
        ),
        PaymentStatus.captured: frozenset({PaymentStatus.voided, PaymentStatus.refunded}),
    },
)


class Payment(Aggregate[PaymentStatus, PaymentChanged], Base):
    __tablename__ = "payments"
    __table_args__ = {"schema": "payment"}

    MACHINE = PAYMENT_MACHINE

    status: Mapped[PaymentStatus] = status_column(PaymentStatus)

    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    # The card as the shop knows it: the provider's payment-method token, brand and last
    # four digits. The number itself is exchanged for the token at checkout, never kept.
    card_last4: Mapped[str] = mapped_column(String(4))
    card_brand: Mapped[str] = mapped_column(String(20), default="card")
    payment_method: Mapped[str | None] = mapped_column(String(100))
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    # Set in the order-cancel transaction; the capture job then never charges the card.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    failure_reason: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def correlation_id(self) -> uuid.UUID:
        return self.order_id

    def snapshot(self, event: type[PaymentChanged], **extra: Any) -> PaymentChanged:
        return event(
            payment_id=self.id,
            order_id=self.order_id,
            status=self.status,
            amount=self.amount,
            currency=self.currency,
            failure_reason=self.failure_reason,
            version=self.version,
            **extra,
        )
