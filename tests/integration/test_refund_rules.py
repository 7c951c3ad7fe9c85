"""Refund rules in one process against real PostgreSQL, Redis and the sandbox provider."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.coupon import service as coupons
from app.coupon.models import Coupon
from app.delivery.events import DeliveryDelivered
from app.delivery.models import Delivery
from app.payment import tasks as payment_tasks
from app.payment.service import payment_for_order
from app.platform import uow
from app.platform.errors import Conflict
from app.platform.events import Event
from app.platform.outbox import OutboxRow
from app.platform.settings import get_settings
from app.refund import service as refunds
from app.refund.events import RefundCancelled, RefundRequested
from app.refund.models import Refund
from tests.support.events import emitted
from tests.support.inproc import delivered, events_of, place

Factory = async_sessionmaker[AsyncSession]


def _command(order_id: uuid.UUID, customer: uuid.UUID) -> refunds.FileRefund:
    return refunds.FileRefund(customer, order_id, "missing_item", "No garlic bread")


async def _state(session_factory: Factory, order_id: uuid.UUID) -> tuple[str, int, int]:
    """(delivery status, refunds, refund events) for an order."""
    async with session_factory() as session:
        delivery = await session.scalar(select(Delivery).where(Delivery.order_id == order_id))
        count = await session.scalar(
            select(func.count()).select_from(Refund).where(Refund.order_id == order_id)
        )
        events = await session.scalar(
            select(func.count())
            .select_from(OutboxRow)
            .where(OutboxRow.correlation_id == str(order_id), OutboxRow.type.like("%Return%"))
        )
    assert delivery is not None
    return delivery.status, int(count or 0), int(events or 0)


async def test_refund_and_delivery_change_commit_together_or_not_at_all(
    session_factory: Factory, ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id, customer = await delivered(session_factory, ctx)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut after the delivery moved")

    with monkeypatch.context() as patch:
        patch.setattr(refunds, "record_pending", crash)
        async with session_factory() as session:
            with pytest.raises(RuntimeError):
                await refunds.file_refund(session, get_settings(), _command(order_id, customer))
    assert await _state(session_factory, order_id) == ("delivered", 0, 0)

    async with session_factory() as session:
        refund = await refunds.file_refund(session, get_settings(), _command(order_id, customer))
    assert refund.status == "requested"
    assert await _state(session_factory, order_id) == ("return_requested", 1, 1)


async def test_two_refunds_at_once_make_one(session_factory: Factory, ctx: dict[str, Any]) -> None:
    order_id, customer = await delivered(session_factory, ctx)

    async def attempt() -> Refund | Conflict:
        async with session_factory() as session:
            try:
                return await refunds.file_refund(
                    session, get_settings(), _command(order_id, customer)
                )
            except Conflict as exc:
                return exc

    results = await asyncio.gather(*(attempt() for _ in range(8)))
    assert sum(isinstance(r, Refund) for r in results) == 1
    assert all("already in progress" in r.detail for r in results if isinstance(r, Conflict))
    assert await _state(session_factory, order_id) == ("return_requested", 1, 1)


async def test_the_provider_refunds_once_when_the_job_runs_twice(
    session_factory: Factory, ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    from app.delivery import service as delivery

    order_id, customer = await delivered(session_factory, ctx)
    async with session_factory() as session:
        await refunds.file_refund(session, get_settings(), _command(order_id, customer))
    async with session_factory() as session:
        current = await delivery.delivery_for_order(session, order_id)
        assert current is not None
        await delivery.complete_return(session, current.id)
        await uow.complete(session)
    [returned] = await events_of(session_factory, order_id, "DeliveryReturned")
    job = returned.to_event().to_job_arg()

    results = await asyncio.gather(*(payment_tasks.refund(ctx, job) for _ in range(3)))

    async with session_factory() as session:
        payment = await payment_for_order(session, order_id)
    assert payment is not None and payment.status == "refunded"
    charges = await sandbox.get("/sandbox/payments/charges", params={"reference": str(payment.id)})
    assert charges.json()[0]["operations"] == ["capture", "refund"]
    assert results.count("refunded") >= 1
    assert len(await events_of(session_factory, order_id, "PaymentRefunded")) == 1


def _event(kind: str, order_id: uuid.UUID, customer: uuid.UUID, refund_id: uuid.UUID) -> Event:
    contract = {
        "RefundRequested": RefundRequested,
        "RefundCancelled": RefundCancelled,
        "DeliveryDelivered": DeliveryDelivered,
    }[kind]
    fields: dict[str, Any] = {"order_id": order_id, "customer_id": customer}
    if contract is not DeliveryDelivered:
        fields["refund_id"] = refund_id
    return emitted(contract, **fields)


async def _placed(session_factory: Factory) -> tuple[uuid.UUID, uuid.UUID]:
    """An order and its customer: the coupon's events show in the order's view."""
    customer = uuid.uuid4()
    return await place(session_factory, customer_id=customer), customer


async def _coupon(session_factory: Factory, order_id: uuid.UUID) -> Coupon | None:
    async with session_factory() as session:
        return await session.scalar(select(Coupon).where(Coupon.order_id == order_id))


async def test_a_revoke_before_the_issue_leaves_a_tombstone(session_factory: Factory) -> None:
    order_id, customer = await _placed(session_factory)
    refund_id = uuid.uuid4()
    settings = get_settings()
    async with uow.transaction(session_factory) as session:
        await coupons.revoke_for_refund(
            session, _event("RefundRequested", order_id, customer, refund_id)
        )
    delivered_late = _event("DeliveryDelivered", order_id, customer, refund_id)
    async with uow.transaction(session_factory) as session:
        await coupons.issue_for_delivery(session, settings, delivered_late)
    assert await _coupon(session_factory, order_id) is None, "the late issue did nothing"

    async with uow.transaction(session_factory) as session:
        await coupons.reinstate_for_refund(
            session, settings, _event("RefundCancelled", order_id, customer, refund_id)
        )
    coupon = await _coupon(session_factory, order_id)
    assert coupon is not None and coupon.status == "issued", "refund cancelled: the coupon is due"


async def test_a_cancel_that_overtakes_its_revoke_keeps_the_coupon(
    session_factory: Factory,
) -> None:
    order_id, customer = await _placed(session_factory)
    refund_id = uuid.uuid4()
    settings = get_settings()
    async with uow.transaction(session_factory) as session:
        await coupons.issue_for_delivery(
            session, settings, _event("DeliveryDelivered", order_id, customer, refund_id)
        )
    async with uow.transaction(session_factory) as session:
        await coupons.reinstate_for_refund(
            session, settings, _event("RefundCancelled", order_id, customer, refund_id)
        )
    async with uow.transaction(session_factory) as session:
        await coupons.revoke_for_refund(
            session, _event("RefundRequested", order_id, customer, refund_id)
        )
    coupon = await _coupon(session_factory, order_id)
    assert coupon is not None and coupon.status == "issued"


async def test_a_coupon_already_spent_is_flagged_for_staff(session_factory: Factory) -> None:
    order_id, customer = await _placed(session_factory)
    refund_id = uuid.uuid4()
    settings = get_settings()
    async with uow.transaction(session_factory) as session:
        await coupons.issue_for_delivery(
            session, settings, _event("DeliveryDelivered", order_id, customer, refund_id)
        )
    coupon = await _coupon(session_factory, order_id)
    assert coupon is not None
    spent_on = uuid.uuid4()
    async with uow.transaction(session_factory) as session:
        await coupons.redeem(session, coupon.code, customer, spent_on)
    async with uow.transaction(session_factory) as session:
        await coupons.revoke_for_refund(
            session, _event("RefundRequested", order_id, customer, refund_id)
        )
    flagged = await _coupon(session_factory, order_id)
    assert flagged is not None and flagged.status == "redeemed"
    assert flagged.flagged is not None and str(spent_on) in flagged.flagged


async def test_cancelling_one_refund_keeps_the_coupon_revoked_while_another_holds_it(
    session_factory: Factory,
) -> None:
    """Refund A withdrawn, refund B filed: the coupon worker may see A's revoke, B's revoke
    and then A's cancel. A's cancel must not hand the coupon back while B still holds it."""
    order_id, customer = await _placed(session_factory)
    first, second = uuid.uuid4(), uuid.uuid4()
    settings = get_settings()
    async with uow.transaction(session_factory) as session:
        await coupons.issue_for_delivery(
            session, settings, _event("DeliveryDelivered", order_id, customer, first)
        )
    for refund_id in (first, second):
        async with uow.transaction(session_factory) as session:
            await coupons.revoke_for_refund(
                session, _event("RefundRequested", order_id, customer, refund_id)
            )
    async with uow.transaction(session_factory) as session:
        await coupons.reinstate_for_refund(
            session, settings, _event("RefundCancelled", order_id, customer, first)
        )
    coupon = await _coupon(session_factory, order_id)
    assert coupon is not None and coupon.status == "revoked", "refund B still revokes it"

    async with uow.transaction(session_factory) as session:
        await coupons.reinstate_for_refund(
            session, settings, _event("RefundCancelled", order_id, customer, second)
        )
    coupon = await _coupon(session_factory, order_id)
    assert coupon is not None and coupon.status == "issued", "no refund holds it any more"
