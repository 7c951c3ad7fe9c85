"""Refund: a customer's request for money back on a delivered order, with a reason."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.aggregate import Aggregate, status_column
from app.platform.db import Base, utcnow
from app.platform.statemachine import StateMachine
from app.refund.events import RefundChanged


class RefundStatus(StrEnum):
    requested = "requested"
    completed = "completed"
    cancelled = "cancelled"


REFUND_MACHINE = StateMachine[RefundStatus](
    "refund",
    {RefundStatus.requested: frozenset({RefundStatus.completed, RefundStatus.cancelled})},
)

MAX_REASON_LENGTH = 1000


class RefundReason(Base):
    """The shop's list of refund reasons: data an admin edits, not constants in code."""

    __tablename__ = "reasons"
    __table_args__ = {"schema": "refund"}

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=100)
    requires_text: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Refund(Aggregate[RefundStatus, RefundChanged], Base):
    __tablename__ = "refunds"
    __table_args__ = (
        # At most one live refund per order, also under concurrent requests.
        Index(
            "uq_refunds_live_order",
            "order_id",
            unique=True,
            postgresql_where=text("status IN ('requested', 'completed')"),
        ),
        Index("ix_refunds_customer_created", "customer_id", "created_at"),
        {"schema": "refund"},
    )

    MACHINE = REFUND_MACHINE

    status: Mapped[RefundStatus] = status_column(RefundStatus)

    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    reason_code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text, default="")
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    cancelled_by: Mapped[str | None] = mapped_column(String(20))
    #: why the shop cancelled the return, in words the customer reads
    cancel_note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def correlation_id(self) -> uuid.UUID:
        return self.order_id

    def snapshot(self, event: type[RefundChanged], **extra: Any) -> RefundChanged:
        """``extra`` names the reason in words (``reason_label``): the list of reasons is
        data, read by the use case."""
        return event(
            refund_id=self.id,
            order_id=self.order_id,
            customer_id=self.customer_id,
            status=self.status,
            reason_code=self.reason_code,
            reason=self.reason,
            amount=self.amount,
            currency=self.currency,
            cancelled_by=self.cancelled_by,
            cancel_note=self.cancel_note,
            created_at=self.created_at,
            version=self.version,
            **extra,
        )
