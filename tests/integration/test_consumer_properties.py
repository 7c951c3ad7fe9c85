"""The seed's two consumer properties, with real processes (issue 9 "Also"):

- a consumer stopped for a while receives the events it missed when it comes back
  (orders and deliveries go on meanwhile; the coupons catch up: NFR2.1 / 2.3);
- consumers scaled out (two replicas of every worker, two relays) process each event
  once in effect: one charge, one delivery, one coupon per order, and every subscriber
  recorded every event in its inbox.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.coupon.models import Coupon
from app.delivery import service as deliveries
from app.delivery.models import Delivery, DeliveryStatus
from app.payment.models import Payment
from app.platform.outbox import InboxRow, OutboxRow
from app.subscriptions import SUBSCRIPTIONS
from tests.support.inproc import place
from tests.support.pipeline import Pipeline, eventually
from workers import QUEUES

Factory = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.timeout(600)


async def _delivery(factory: Factory, order_id: uuid.UUID) -> Delivery | None:
    async with factory() as session:
        return await session.scalar(select(Delivery).where(Delivery.order_id == order_id))


async def _deliver(factory: Factory, orders: list[uuid.UUID]) -> None:
    """Staff move every order's delivery to its door, once the delivery exists."""
    for order_id in orders:
        found = await eventually(
            lambda o=order_id: _delivery(factory, o), f"delivery of {order_id}", 240
        )
        async with factory() as session:
            current: Delivery = found
            while current.status != DeliveryStatus.delivered:
                current = await deliveries.advance(session, current.id)
                await session.commit()


async def _coupons(factory: Factory, orders: list[uuid.UUID]) -> int:
    async with factory() as session:
        count = await session.scalar(
            select(func.count()).select_from(Coupon).where(Coupon.order_id.in_(orders))
        )
    return int(count or 0)


async def _coupon_each(factory: Factory, orders: list[uuid.UUID]) -> bool:
    return await _coupons(factory, orders) == len(orders)


async def test_a_consumer_stopped_for_a_while_catches_up_on_return(
    fresh: Pipeline, factory: Factory
) -> None:
    fresh.start("relay")
    for queue in QUEUES:
        if queue != "coupon":
            fresh.start("worker", queue)
    orders = [await place(factory) for _ in range(5)]
    await _deliver(factory, orders)
    await asyncio.sleep(3)  # the coupon worker is away a while; nothing else waits on it
    assert await _coupons(factory, orders) == 0

    fresh.start("worker", "coupon")

    await eventually(lambda: _coupon_each(factory, orders), "a coupon for every order", 120)
    assert await _handled(factory, "coupon.issue", "DeliveryDelivered", orders) == len(orders)


async def _handled(factory: Factory, handler: str, kind: str, orders: list[uuid.UUID]) -> int:
    """How many of the orders' ``kind`` events ``handler`` recorded in its inbox."""
    async with factory() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(InboxRow)
            .join(OutboxRow, OutboxRow.id == InboxRow.event_id)
            .where(
                InboxRow.handler == handler,
                OutboxRow.type == kind,
                OutboxRow.correlation_id.in_([str(o) for o in orders]),
            )
        )
    return int(count or 0)


async def test_two_replicas_of_every_worker_and_two_relays_process_each_event_once(
    fresh: Pipeline, factory: Factory
) -> None:
    for _ in range(2):
        fresh.start("relay")
        for queue in QUEUES:
            fresh.start("worker", queue)
    orders = [await place(factory) for _ in range(8)]
    await _deliver(factory, orders)
    await eventually(lambda: _coupon_each(factory, orders), "a coupon for every order", 180)
    await eventually(lambda: _every_subscriber_done(factory, orders), "every inbox row", 180)

    async with factory() as session:
        payments = list(await session.scalars(select(Payment).where(Payment.order_id.in_(orders))))
        per_type = dict(
            (
                await session.execute(
                    select(OutboxRow.type, func.count())
                    .where(OutboxRow.correlation_id.in_([str(o) for o in orders]))
                    .group_by(OutboxRow.type)
                )
            ).all()
        )
    assert len(payments) == len(orders) and {p.status for p in payments} == {"captured"}
    for kind in ("PaymentCaptured", "OrderPaid", "DeliveryCreated", "CouponIssued"):
        assert per_type.get(kind) == len(orders), (kind, per_type)
    async with httpx.AsyncClient(base_url=fresh.sandbox_url, timeout=10) as sandbox:
        for payment in payments:
            charges = (
                await sandbox.get(
                    "/sandbox/payments/charges", params={"reference": str(payment.id)}
                )
            ).json()
            assert [c["operations"] for c in charges] == [["capture"]], "charged once"
        for order_id in orders:
            found = await _delivery(factory, order_id)
            assert found is not None
            pickups = (
                await sandbox.get("/sandbox/courier/pickups", params={"reference": str(found.id)})
            ).json()
            assert len(pickups) == 1, "one rider asked for"


async def _every_subscriber_done(factory: Factory, orders: list[uuid.UUID]) -> bool:
    """Every event of these orders has an inbox row from each of its subscribers."""
    async with factory() as session:
        events = list(
            await session.execute(
                select(OutboxRow.id, OutboxRow.type).where(
                    OutboxRow.correlation_id.in_([str(o) for o in orders])
                )
            )
        )
        recorded = set(
            (
                await session.execute(
                    select(InboxRow.handler, InboxRow.event_id).where(
                        InboxRow.event_id.in_([e.id for e in events])
                    )
                )
            ).all()
        )
    wanted = {
        (subscriber.task, event.id)
        for event in events
        for subscriber in SUBSCRIPTIONS.get(event.type, [])
    }
    return wanted <= recorded
