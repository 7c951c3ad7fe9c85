"""Cancel voids exactly once; coupons are issued once per order and redeemed once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.coupon import tasks as coupon_tasks
from app.coupon.models import Coupon
from app.delivery.events import DeliveryDelivered
from app.ordering import service as ordering
from app.payment import tasks as payment_tasks
from app.payment.service import payment_for_order
from app.platform import uow
from app.platform.errors import InvalidInput
from app.platform.settings import get_settings
from app.status.models import OrderView
from tests.support.events import emitted
from tests.support.inproc import events_of, place, place_command

Factory = async_sessionmaker[AsyncSession]


async def _charges(sandbox: httpx.AsyncClient, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    response = await sandbox.get("/sandbox/payments/charges", params={"reference": str(payment_id)})
    return response.json()  # type: ignore[no-any-return]


async def test_the_void_happens_once_even_if_the_job_runs_twice(
    session_factory: Factory, ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed.to_event().to_job_arg()) == "captured"
    async with session_factory() as session:
        await ordering.cancel_order(session, order_id, customer)
    [cancelled] = await events_of(session_factory, order_id, "OrderCancelled")
    job = cancelled.to_event().to_job_arg()

    results = await asyncio.gather(payment_tasks.void(ctx, job), payment_tasks.void(ctx, job))

    async with session_factory() as session:
        payment = await payment_for_order(session, order_id)
    assert payment is not None and payment.status == "voided"
    [charge] = await _charges(sandbox, payment.id)
    assert charge["operations"] == ["capture", "void"]
    assert "voided" in results
    assert len(await events_of(session_factory, order_id, "PaymentVoided")) == 1
    # "Paid ₩…" on the timeline is followed by the void, so no one reads it as money taken
    steps = await _timeline(session_factory, order_id)
    assert [s["status"] for s in steps][-3:] == ["paid", "cancelled", "payment_voided"]
    assert steps[-1]["args"] == {"amount": payment.amount, "currency": payment.currency}
    assert "was voided: no money was taken" in steps[-1]["detail"]


async def test_cancelled_before_the_charge_moves_no_money(
    session_factory: Factory, ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    async with session_factory() as session:
        await ordering.cancel_order(session, order_id, customer)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed.to_event().to_job_arg()) == "voided"
    [cancelled] = await events_of(session_factory, order_id, "OrderCancelled")
    assert await payment_tasks.void(ctx, cancelled.to_event().to_job_arg()) == "nothing to void"
    async with session_factory() as session:
        payment = await payment_for_order(session, order_id)
    assert payment is not None and payment.status == "voided"
    assert await _charges(sandbox, payment.id) == []
    steps = await _timeline(session_factory, order_id)
    assert [s["status"] for s in steps] == ["placed", "cancelled", "payment_voided"]
    assert "args" not in steps[-1] and steps[-1]["detail"] == "No money was taken."


async def _timeline(session_factory: Factory, order_id: uuid.UUID) -> list[dict[str, Any]]:
    async with session_factory() as session:
        view = await session.get(OrderView, order_id)
    assert view is not None
    return view.doc["timeline"]  # type: ignore[no-any-return]


def _delivered(order_id: uuid.UUID, customer_id: uuid.UUID) -> dict[str, Any]:
    return emitted(DeliveryDelivered, order_id=order_id, customer_id=customer_id).to_job_arg()


async def _coupons_for(session_factory: Factory, order_id: uuid.UUID) -> list[Coupon]:
    async with session_factory() as session:
        return list(await session.scalars(select(Coupon).where(Coupon.order_id == order_id)))


async def test_a_coupon_is_issued_once_however_often_delivery_is_reported(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)  # the coupon shows in its view
    event = _delivered(order_id, customer)
    outcomes = await asyncio.gather(*(coupon_tasks.issue(ctx, event) for _ in range(5)))
    another_event_same_order = _delivered(order_id, customer)
    assert await coupon_tasks.issue(ctx, another_event_same_order) is True  # handled, no-op

    [coupon] = await _coupons_for(session_factory, order_id)
    assert coupon.status == "issued" and coupon.customer_id == customer
    assert sorted(outcomes) == [False, False, False, False, True]
    assert len(await events_of(session_factory, order_id, "CouponIssued")) == 1


async def test_two_checkouts_racing_for_one_coupon_redeem_it_once(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    customer = uuid.uuid4()
    earned_with = await place(session_factory, customer_id=customer)
    await coupon_tasks.issue(ctx, _delivered(earned_with, customer))
    [coupon] = await _coupons_for(session_factory, earned_with)

    async def checkout() -> ordering.PlacedOrder | InvalidInput:
        command = place_command(customer_id=customer)
        command = ordering.PlaceOrder(**{**command.__dict__, "coupon_code": coupon.code})
        async with session_factory() as session:
            try:
                return await ordering.place_order(session, get_settings(), command)
            except InvalidInput as exc:
                return exc

    results = await asyncio.gather(*(checkout() for _ in range(6)))
    placed = [r for r in results if isinstance(r, ordering.PlacedOrder)]
    refused = [r for r in results if isinstance(r, InvalidInput)]
    assert len(placed) == 1 and len(refused) == 5
    for refusal in refused:
        assert list(refusal.by_field()) == ["coupon_code"]
        assert refusal.by_field()["coupon_code"] == "This coupon has already been used."
    async with session_factory() as session:
        used = await session.get(Coupon, coupon.id)
        assert used is not None and used.status == "redeemed"
        assert used.redeemed_order_id == placed[0].order_id
        from app.ordering.models import Order

        orders = await session.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.customer_id == customer, Order.id != earned_with)
        )
        assert orders == 1, "the refused checkouts left no order behind"


async def test_cancelling_an_order_gives_its_coupon_back(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    customer = uuid.uuid4()
    earned_with = await place(session_factory, customer_id=customer)
    await coupon_tasks.issue(ctx, _delivered(earned_with, customer))
    [coupon] = await _coupons_for(session_factory, earned_with)
    command = ordering.PlaceOrder(
        **{**place_command(customer_id=customer).__dict__, "coupon_code": coupon.code}
    )
    async with session_factory() as session:
        placed = await ordering.place_order(session, get_settings(), command)
    async with session_factory() as session:
        await ordering.cancel_order(session, placed.order_id, customer)
    [again] = await _coupons_for(session_factory, earned_with)
    assert (again.status, again.redeemed_order_id) == ("issued", None)


async def test_a_cancel_racing_the_delivery_being_created_cancels_that_delivery(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    """The delivery worker inserts the ticket for ``OrderPaid`` while the customer cancels:
    the cancel looked before that insert committed, so its tombstone loses. It must then
    cancel the delivery that won (the chaos suite saw a cancelled order with a queued
    ticket, cooked for nobody)."""
    from sqlalchemy import text

    from app.delivery import service as delivery
    from app.delivery.models import Delivery

    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed.to_event().to_job_arg()) == "captured"
    [captured] = await events_of(session_factory, order_id, "PaymentCaptured")
    async with uow.transaction(session_factory) as session:
        await ordering.on_payment_captured(session, captured.to_event())
    [paid] = await events_of(session_factory, order_id, "OrderPaid")

    async with session_factory() as creating:
        await creating.begin()
        await delivery.create_for_paid_order(creating, paid.to_event())  # not committed yet

        creator = await creating.scalar(text("SELECT pg_backend_pid()"))
        canceller: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def cancel() -> None:
            async with session_factory() as session:
                canceller.set_result(await session.scalar(text("SELECT pg_backend_pid()")))
                await ordering.cancel_order(session, order_id, customer)

        cancelling = asyncio.ensure_future(cancel())
        pid = await canceller
        async with session_factory() as watcher:
            for _ in range(200):  # until the cancel waits on the uncommitted ticket
                # this very cancel, blocked by this very transaction (not any lock wait in
                # the database: another test's shop may share it)
                blockers = await watcher.scalar(text("SELECT pg_blocking_pids(:pid)"), {"pid": pid})
                waiting = creator in (blockers or [])
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting, "the cancel never waited on the ticket being created"
        await uow.complete(creating)
        await cancelling

    async with session_factory() as session:
        ticket = await session.scalar(select(Delivery).where(Delivery.order_id == order_id))
    assert ticket is not None and ticket.status == "cancelled"
    assert len(await events_of(session_factory, order_id, "DeliveryCancelled")) == 1
