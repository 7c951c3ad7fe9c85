"""The events the refund context emits (its contract with the other contexts)."""

from __future__ import annotations

import uuid
from datetime import datetime

from app.platform.events import DomainEvent


class RefundChanged(DomainEvent):
    """Every refund event carries the refund as it now stands."""

    ABSTRACT = True
    AGGREGATE = "refund"

    refund_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    #: a ``RefundStatus`` value
    status: str
    reason_code: str
    reason: str
    amount: int
    currency: str
    created_at: datetime
    reason_label: str | None = None
    cancelled_by: str | None = None
    cancel_note: str | None = None


class RefundRequested(RefundChanged):
    """A customer asked for their money back: the order's coupon is revoked."""


class RefundCompleted(RefundChanged):
    PROJECTION_ONLY = True


class RefundCancelled(RefundChanged):
    """The refund was withdrawn: the coupon is reinstated."""


EVENTS = (RefundRequested, RefundCompleted, RefundCancelled)
