"""The events the payment context emits (its contract with the other contexts)."""

from __future__ import annotations

import uuid

from app.platform.events import DomainEvent


class PaymentChanged(DomainEvent):
    """Every payment event carries the payment as it now stands."""

    ABSTRACT = True
    AGGREGATE = "payment"

    payment_id: uuid.UUID
    order_id: uuid.UUID
    #: a ``PaymentStatus`` value
    status: str
    amount: int
    currency: str
    failure_reason: str | None = None


class PaymentCaptured(PaymentChanged):
    """The card was charged: the order is paid."""


class PaymentFailed(PaymentChanged):
    """The charge was declined: the order failed (``failure_reason`` says why)."""


class PaymentVoided(PaymentChanged):
    PROJECTION_ONLY = True


class PaymentRefunded(PaymentChanged):
    """The money went back after a return: the refund and the order complete."""


EVENTS = (PaymentCaptured, PaymentFailed, PaymentVoided, PaymentRefunded)
