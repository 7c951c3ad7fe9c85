"""Coupon: one coupon per delivered order, redeemable once."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.coupon.events import CouponChanged
from app.platform.aggregate import Aggregate, status_column
from app.platform.db import Base, utcnow
from app.platform.statemachine import StateMachine


class CouponStatus(StrEnum):
    issued = "issued"
    redeemed = "redeemed"
    revoked = "revoked"
    expired = "expired"


COUPON_MACHINE = StateMachine[CouponStatus](
    "coupon",
    {
        CouponStatus.issued: frozenset(
            {CouponStatus.redeemed, CouponStatus.revoked, CouponStatus.expired}
        ),
        # redeemed → issued: the order that used it was cancelled, the customer keeps it.
        CouponStatus.redeemed: frozenset({CouponStatus.issued}),
        # revoked → issued: the refund that revoked it was cancelled (FR11).
        CouponStatus.revoked: frozenset({CouponStatus.issued}),
    },
)


class Coupon(Aggregate[CouponStatus, CouponChanged], Base):
    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_coupons_customer", "customer_id", "issued_at"),
        Index("ix_coupons_redeemed_order", "redeemed_order_id"),
        {"schema": "coupon"},
    )

    MACHINE = COUPON_MACHINE

    status: Mapped[CouponStatus] = status_column(CouponStatus)

    code: Mapped[str] = mapped_column(String(20), unique=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    discount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    redeemed_order_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    #: set when a refund wanted to revoke a coupon already spent: staff decide
    flagged: Mapped[str | None] = mapped_column(String(300))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def correlation_id(self) -> uuid.UUID:
        return self.order_id

    def snapshot(self, event: type[CouponChanged], **extra: Any) -> CouponChanged:
        return event(
            coupon_id=self.id,
            code=self.code,
            order_id=self.order_id,
            customer_id=self.customer_id,
            status=self.status,
            discount=self.discount,
            currency=self.currency,
            redeemed_order_id=self.redeemed_order_id,
            flagged=self.flagged,
            version=self.version,
            **extra,
        )


class Revocation(Base):
    """A refund's claim on the order's coupon, kept even when no coupon exists yet.

    While ``state`` is ``revoked`` it is the tombstone that makes a late issue do nothing;
    ``reinstated`` records that the refund was cancelled (also when that news arrives
    before the revoke itself).
    """

    __tablename__ = "revocations"
    __table_args__ = (Index("ix_revocations_order", "order_id"), {"schema": "coupon"})

    refund_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    state: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
