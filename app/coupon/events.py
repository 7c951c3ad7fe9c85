"""The events the coupon context emits (its contract with the other contexts)."""

from __future__ import annotations

import uuid

from app.platform.events import DomainEvent


class CouponChanged(DomainEvent):
    """Every coupon event carries the coupon as it now stands."""

    ABSTRACT = True
    AGGREGATE = "coupon"
    PROJECTION_ONLY = True

    coupon_id: uuid.UUID
    code: str
    #: the order that earned it
    order_id: uuid.UUID
    customer_id: uuid.UUID
    #: a ``CouponStatus`` value
    status: str
    discount: int
    currency: str | None = None
    redeemed_order_id: uuid.UUID | None = None
    #: why the coupon is held for a look by staff, if it is
    flagged: str | None = None


class CouponIssued(CouponChanged):
    """The read side shows it; nothing else reacts."""


class CouponRedeemed(CouponChanged):
    """The read side shows it; nothing else reacts."""


class CouponReinstated(CouponChanged):
    """The read side shows it; nothing else reacts."""


class CouponRevoked(CouponChanged):
    """The read side shows it; nothing else reacts."""


class CouponFlagged(CouponChanged):
    """The read side shows it; nothing else reacts."""


EVENTS = (CouponIssued, CouponRedeemed, CouponReinstated, CouponRevoked, CouponFlagged)
