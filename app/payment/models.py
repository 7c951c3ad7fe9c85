"""Payment: one payment per order and its state machine."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, Integer, String, false
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

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


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = {"schema": "payment"}

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    # The card as the shop knows it: the provider's payment-method token, brand and last
    # four digits. The number itself is exchanged for the token at checkout, never kept.
    card_last4: Mapped[str] = mapped_column(String(4))
    card_brand: Mapped[str] = mapped_column(String(20), default="card")
    payment_method: Mapped[str | None] = mapped_column(String(100))
    provider_ref: Mapped[str | None] = mapped_column(String(100))
    # Set in the order-cancel transaction; the capture job then never charges the card.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    failure_reason: Mapped[str | None] = mapped_column(String(300))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def move_to(self, target: PaymentStatus) -> None:
        self.status = PAYMENT_MACHINE.check(PaymentStatus(self.status), target).value
        self.version += 1
        self.updated_at = utcnow()
