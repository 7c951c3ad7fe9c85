"""Coupon use cases: issue on delivery, redeem at checkout, give back on cancel."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.coupon.events import (
    CouponFlagged,
    CouponIssued,
    CouponRedeemed,
    CouponReinstated,
    CouponRevoked,
)
from app.coupon.models import Coupon, CouponStatus, Revocation
from app.delivery.events import DeliveryDelivered
from app.platform.aggregate import record_pending
from app.platform.errors import InvalidInput
from app.platform.events import Event
from app.platform.i18n import N_
from app.platform.settings import Settings
from app.platform.text import storable
from app.refund.events import RefundCancelled, RefundRequested

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read aloud


REVOKED = "revoked"
REINSTATED = "reinstated"


def new_code() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"PIZZA-{body[:4]}-{body[4:]}"


def normalize_code(code: str) -> str:
    return code.strip().upper()


def plausible_code(code: str) -> bool:
    """Could this be one of our codes (``PIZZA-XXXX-XXXX``)? Anything else is not looked up."""
    return len(code) <= 20 and storable(code)


async def issue_for_delivery(session: AsyncSession, settings: Settings, event: Event) -> None:
    """``DeliveryDelivered`` → one coupon for that order (unique per order)."""
    delivered = event.as_(DeliveryDelivered)
    if await _revoked(session, delivered.order_id):
        return  # a refund got here first: its tombstone says no coupon for this order
    await _issue(session, settings, delivered.order_id, delivered.customer_id, event)


async def _revoked(session: AsyncSession, order_id: uuid.UUID) -> bool:
    state = await session.scalar(
        select(Revocation.refund_id).where(
            Revocation.order_id == order_id, Revocation.state == REVOKED
        )
    )
    return state is not None


async def _issue(
    session: AsyncSession,
    settings: Settings,
    order_id: uuid.UUID,
    customer_id: uuid.UUID,
    cause: Event,
) -> None:
    coupon_id = await session.scalar(
        insert(Coupon)
        .values(
            id=uuid.uuid4(),
            code=new_code(),
            order_id=order_id,
            customer_id=customer_id,
            status=CouponStatus.issued,
            discount=settings.shop.coupon_discount,
            currency=settings.shop.currency,
            version=1,
        )
        .on_conflict_do_nothing(index_elements=[Coupon.order_id])
        .returning(Coupon.id)
    )
    if coupon_id is not None:
        coupon = await session.get(Coupon, coupon_id)
        if coupon is None:
            raise RuntimeError(f"coupon {coupon_id} is gone right after it was issued")
        coupon.emit(CouponIssued)
        record_pending(session, coupon, cause)


async def redeem(
    session: AsyncSession, code: str, customer_id: uuid.UUID, order_id: uuid.UUID
) -> int:
    """Use the customer's coupon on ``order_id``; return its discount.

    The row lock makes two concurrent checkouts with one coupon take turns: the second
    finds it redeemed. Unknown, used or someone else's → 422 on ``coupon_code``.
    """
    coupon = _usable(await _owned(session, code, customer_id, lock=True))
    coupon.move_to(CouponStatus.redeemed)
    coupon.redeemed_order_id = order_id
    coupon.emit(CouponRedeemed)
    record_pending(session, coupon)
    return coupon.discount


async def discount_of(session: AsyncSession, code: str, customer_id: uuid.UUID) -> int:
    """What the customer's coupon would take off an order now, refused as ``redeem``
    refuses it: the checkout shows the amount Pay will charge before it is pressed.
    Nothing is locked; placing the order checks again."""
    return _usable(await _owned(session, code, customer_id, lock=False)).discount


async def _owned(
    session: AsyncSession, code: str, customer_id: uuid.UUID, *, lock: bool
) -> Coupon | None:
    """The customer's coupon with this code as typed (any case, spaces), if any; ``lock``
    holds its row until the transaction ends."""
    code = normalize_code(code)
    if not plausible_code(code):
        return None
    found = select(Coupon).where(Coupon.code == code, Coupon.customer_id == customer_id)
    return await session.scalar(found.with_for_update() if lock else found)


def _usable(coupon: Coupon | None) -> Coupon:
    """The coupon, when it can be used; unknown, used or someone else's → 422."""
    if coupon is None:
        raise InvalidInput.single("coupon_code", N_("This coupon code is not valid."))
    if coupon.status != CouponStatus.issued:
        raise InvalidInput.single("coupon_code", _UNUSABLE[CouponStatus(coupon.status)])
    return coupon


#: why a coupon of the customer's own cannot be used, in a sentence (the state's label in
#: brackets read "(Revoked)" in the middle of one)
_UNUSABLE = {
    CouponStatus.redeemed: N_("This coupon has already been used."),
    CouponStatus.revoked: N_("This coupon was withdrawn with a refund and can no longer be used."),
    CouponStatus.expired: N_("This coupon has expired."),
}


async def release_for_order(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Part of the order-cancel transaction: a coupon used on it can be used again."""
    coupon = await session.scalar(
        select(Coupon).where(Coupon.redeemed_order_id == order_id).with_for_update()
    )
    if coupon is None or coupon.status != CouponStatus.redeemed:
        return
    coupon.move_to(CouponStatus.issued)
    coupon.redeemed_order_id = None
    coupon.emit(CouponReinstated)
    record_pending(session, coupon)


async def coupons_of(session: AsyncSession, customer_id: uuid.UUID) -> list[Coupon]:
    rows = await session.scalars(
        select(Coupon).where(Coupon.customer_id == customer_id).order_by(Coupon.issued_at.desc())
    )
    return list(rows)


async def revoke_for_refund(session: AsyncSession, event: Event) -> None:
    """``RefundRequested`` → the order's coupon is revoked (FR10).

    No coupon yet → the revocation row is a tombstone, so a late issue does nothing.
    Already spent on another order → flagged for staff, never an error.
    """
    requested = event.as_(RefundRequested)
    refund_id, order_id = requested.refund_id, requested.order_id
    claimed = await session.scalar(
        insert(Revocation)
        .values(refund_id=refund_id, order_id=order_id, state=REVOKED)
        .on_conflict_do_nothing()
        .returning(Revocation.refund_id)
    )
    if claimed is None:
        return  # seen before, or the refund was already cancelled (reinstated first)
    coupon = await _locked_for_order(session, order_id)
    if coupon is None:
        return
    if coupon.status == CouponStatus.issued:
        coupon.move_to(CouponStatus.revoked)
        coupon.emit(CouponRevoked)
        record_pending(session, coupon, event)
    elif coupon.status == CouponStatus.redeemed and not coupon.flagged:
        coupon.flagged = (
            f"Refund {refund_id} asked to revoke it, but it was already used on order "
            f"{coupon.redeemed_order_id}."
        )
        coupon.changed()
        coupon.emit(CouponFlagged)
        record_pending(session, coupon, event)


async def reinstate_for_refund(session: AsyncSession, settings: Settings, event: Event) -> None:
    """``RefundCancelled`` → the coupon comes back (FR11), or is issued now if the
    refund's tombstone had stopped it, unless another refund of the order still revokes
    it (a refund withdrawn, then filed again: their events may arrive in any order)."""
    cancelled = event.as_(RefundCancelled)
    refund_id, order_id = cancelled.refund_id, cancelled.order_id
    # The coupon row lock first: a concurrent revoke of another refund waits for us, and
    # then finds the coupon in the state we leave it in.
    coupon = await _locked_for_order(session, order_id)
    stmt = insert(Revocation).values(refund_id=refund_id, order_id=order_id, state=REINSTATED)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Revocation.refund_id], set_={"state": REINSTATED}
        )
    )
    if await _revoked(session, order_id):
        return  # another refund of this order still holds the coupon
    if coupon is None:
        await _issue(session, settings, order_id, cancelled.customer_id, event)
        return
    if coupon.status == CouponStatus.revoked:
        coupon.move_to(CouponStatus.issued)
        coupon.emit(CouponReinstated)
        record_pending(session, coupon, event)
    elif coupon.flagged:
        coupon.flagged = None
        coupon.changed()
        coupon.emit(CouponFlagged)
        record_pending(session, coupon, event)


async def _locked_for_order(session: AsyncSession, order_id: uuid.UUID) -> Coupon | None:
    return await session.scalar(select(Coupon).where(Coupon.order_id == order_id).with_for_update())
