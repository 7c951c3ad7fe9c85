"""Coupon API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from app.coupon.models import Coupon


class CouponView(msgspec.Struct, rename="camel"):
    code: str
    status: str
    order_id: uuid.UUID
    discount: int
    currency: str
    issued_at: datetime
    redeemed_order_id: uuid.UUID | None

    @classmethod
    def of(cls, coupon: Coupon) -> CouponView:
        return cls(
            code=coupon.code,
            status=coupon.status,
            order_id=coupon.order_id,
            discount=coupon.discount,
            currency=coupon.currency,
            issued_at=coupon.issued_at,
            redeemed_order_id=coupon.redeemed_order_id,
        )
