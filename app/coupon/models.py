"""Coupon: one coupon per delivered order, redeemable once."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, Index, Integer, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

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


class Coupon(Base):
    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_coupons_customer", "customer_id", "issued_at"),
        Index("ix_coupons_redeemed_order", "redeemed_order_id"),
        {"schema": "coupon"},
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(String(20))
    discount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    redeemed_order_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    #: set when a refund wanted to revoke a coupon already spent: staff decide
    flagged: Mapped[str | None] = mapped_column(String(300))
    version: Mapped[int] = mapped_column(Integer, default=1)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def move_to(self, target: CouponStatus) -> None:
        self.status = COUPON_MACHINE.check(CouponStatus(self.status), target).value
        self.version += 1
        self.updated_at = utcnow()


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
