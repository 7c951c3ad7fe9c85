"""Coupon use cases: issue on delivery, redeem at checkout, give back on cancel."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.coupon.models import Coupon, CouponStatus
from app.platform.errors import InvalidInput
from app.platform.events import Event
from app.platform.outbox import record_event
from app.platform.settings import Settings

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read aloud


def new_code() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"PIZZA-{body[:4]}-{body[4:]}"


def normalize_code(code: str) -> str:
    return code.strip().upper()


def snapshot(coupon: Coupon) -> dict[str, Any]:
    return {
        "couponId": str(coupon.id),
        "code": coupon.code,
        "orderId": str(coupon.order_id),
        "customerId": str(coupon.customer_id),
        "status": coupon.status,
        "discount": coupon.discount,
        "currency": coupon.currency,
        "redeemedOrderId": str(coupon.redeemed_order_id) if coupon.redeemed_order_id else None,
        "version": coupon.version,
    }


async def _emit(
    session: AsyncSession, coupon: Coupon, event_type: str, cause: Event | None
) -> None:
    await record_event(
        session,
        type=event_type,
        aggregate_type="coupon",
        aggregate_id=coupon.id,
        correlation_id=coupon.order_id,
        causation=cause,
        payload=snapshot(coupon),
    )


async def issue_for_delivery(session: AsyncSession, settings: Settings, event: Event) -> None:
    """``DeliveryDelivered`` → one coupon for that order (unique per order)."""
    p = event.payload
    coupon_id = await session.scalar(
        insert(Coupon)
        .values(
            id=uuid.uuid4(),
            code=new_code(),
            order_id=uuid.UUID(p["orderId"]),
            customer_id=uuid.UUID(p["customerId"]),
            status=CouponStatus.issued.value,
            discount=settings.shop.coupon_discount,
            currency=settings.shop.currency,
            version=1,
        )
        .on_conflict_do_nothing(index_elements=[Coupon.order_id])
        .returning(Coupon.id)
    )
    if coupon_id is not None:
        coupon = await session.get(Coupon, coupon_id)
        assert coupon is not None
        await _emit(session, coupon, "CouponIssued", event)


async def redeem(
    session: AsyncSession, code: str, customer_id: uuid.UUID, order_id: uuid.UUID
) -> int:
    """Use the customer's coupon on ``order_id``; return its discount.

    The row lock makes two concurrent checkouts with one coupon take turns: the second
    finds it redeemed. Unknown, used or someone else's → 422 on ``couponCode``.
    """
    coupon = await session.scalar(
        select(Coupon)
        .where(Coupon.code == normalize_code(code), Coupon.customer_id == customer_id)
        .with_for_update()
    )
    if coupon is None:
        raise InvalidInput.single("couponCode", "This coupon code is not valid.")
    if coupon.status != CouponStatus.issued:
        raise InvalidInput.single("couponCode", f"This coupon is {coupon.status}.")
    coupon.move_to(CouponStatus.redeemed)
    coupon.redeemed_order_id = order_id
    await _emit(session, coupon, "CouponRedeemed", None)
    return coupon.discount


async def release_for_order(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Part of the order-cancel transaction: a coupon used on it can be used again."""
    coupon = await session.scalar(
        select(Coupon).where(Coupon.redeemed_order_id == order_id).with_for_update()
    )
    if coupon is None or coupon.status != CouponStatus.redeemed:
        return
    coupon.move_to(CouponStatus.issued)
    coupon.redeemed_order_id = None
    await _emit(session, coupon, "CouponReinstated", None)


async def coupons_of(session: AsyncSession, customer_id: uuid.UUID) -> list[Coupon]:
    rows = await session.scalars(
        select(Coupon).where(Coupon.customer_id == customer_id).order_by(Coupon.issued_at.desc())
    )
    return list(rows)
