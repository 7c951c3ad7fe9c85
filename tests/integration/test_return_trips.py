"""Return trips (refunds) at the delivery partner, running the real delivery handlers
in this process against real PostgreSQL, Redis and the sandbox partner over HTTP."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.delivery import partner_news, reconcile
from app.delivery import service as deliveries
from app.delivery import tasks as delivery_tasks
from app.delivery.gateway import HttpCourierGateway
from app.delivery.models import ReturnPickupState
from app.platform import uow
from app.platform.db import utcnow
from app.platform.errors import Conflict
from app.platform.settings import get_settings
from app.platform.uow import complete
from app.refund import service as refunds
from app.refund import tasks as refund_tasks
from app.refund.models import Refund, RefundStatus
from tests.support.inproc import delivered, events_of
from workers.context import courier_context

Factory = async_sessionmaker[AsyncSession]


@pytest.fixture
async def courier_ctx(ctx: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The delivery worker's ``ctx``: the real HTTP gateway to the sandbox partner."""
    settings = get_settings()
    async with HttpCourierGateway.from_settings(settings) as gateway:
        yield {**courier_context(ctx, gateway)}


async def _file(session_factory: Factory, order_id: uuid.UUID, customer: uuid.UUID) -> uuid.UUID:
    async with session_factory() as session:
        command = refunds.FileRefund(customer, order_id, "other", "changed my mind")
        refund = await refunds.file_refund(session, get_settings(), command)
    return refund.id


async def _withdraw(session_factory: Factory, refund_id: uuid.UUID, customer: uuid.UUID) -> None:
    async with session_factory() as session:
        await refunds.withdraw(session, refund_id, customer)


async def _job(session_factory: Factory, order_id: uuid.UUID, kind: str, nth: int = -1) -> Any:
    return (await events_of(session_factory, order_id, kind))[nth].to_event().to_job_arg()


async def _pickups(sandbox: httpx.AsyncClient, delivery_id: uuid.UUID) -> list[dict[str, Any]]:
    found = await sandbox.get(
        "/sandbox/courier/pickups", params={"reference": f"{delivery_id}:return"}
    )
    return list(found.json())


async def _delivery_id(session_factory: Factory, order_id: uuid.UUID) -> uuid.UUID:
    async with session_factory() as session:
        current = await deliveries.delivery_for_order(session, order_id)
    assert current is not None
    return current.id


async def _return_booked(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID, dict[str, Any]]:
    """A delivered order with a refund whose return pickup the partner booked: order,
    customer, refund, delivery and the partner's pickup."""
    order_id, customer = await delivered(session_factory, courier_ctx)
    delivery_id = await _delivery_id(session_factory, order_id)
    refund_id = await _file(session_factory, order_id, customer)
    asked = await _job(session_factory, order_id, "DeliveryReturnRequested")
    assert await delivery_tasks.request_return_pickup(courier_ctx, asked) == "requested"
    [pickup] = await _pickups(sandbox, delivery_id)
    return order_id, customer, refund_id, delivery_id, pickup


async def _partner_says(session_factory: Factory, pickup_id: str, news: str) -> None:
    """The partner's news about a pickup, applied as its webhook applies it."""
    async with session_factory() as session:
        await partner_news.apply(session, pickup_id, news, "Rita", utcnow())
        await complete(session)


async def test_a_refund_filed_after_a_withdrawn_one_gets_its_own_return_pickup(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    order_id, customer = await delivered(session_factory, courier_ctx)
    delivery_id = await _delivery_id(session_factory, order_id)

    first = await _file(session_factory, order_id, customer)
    asked = await _job(session_factory, order_id, "DeliveryReturnRequested")
    assert await delivery_tasks.request_return_pickup(courier_ctx, asked) == "requested"
    await _withdraw(session_factory, first, customer)
    cancelled = await _job(session_factory, order_id, "DeliveryReturnCancelled")
    assert await delivery_tasks.withdraw_return_pickup(courier_ctx, cancelled) == "withdrawn"

    await _file(session_factory, order_id, customer)
    asked_again = await _job(session_factory, order_id, "DeliveryReturnRequested")
    assert await delivery_tasks.request_return_pickup(courier_ctx, asked_again) == "requested"

    pickups = await _pickups(sandbox, delivery_id)
    assert len(pickups) == 2, "the second refund has a rider of its own"
    assert sorted(p["status"] for p in pickups) == ["cancelled", "requested"] or sorted(
        p["status"] for p in pickups
    ) == ["assigned", "cancelled"]


async def test_a_return_pickup_is_booked_with_the_pizzas_ready_at_the_customer_s(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The rider collects a return without waiting for a ``ready`` call, which the shop
    never makes for a return (the pizzas are at the customer's): the booking says so."""
    order_id, customer = await delivered(session_factory, courier_ctx)
    delivery_id = await _delivery_id(session_factory, order_id)
    await _file(session_factory, order_id, customer)
    asked = await _job(session_factory, order_id, "DeliveryReturnRequested")

    assert await delivery_tasks.request_return_pickup(courier_ctx, asked) == "requested"

    [pickup] = await _pickups(sandbox, delivery_id)
    assert pickup["bookedReady"] is True
    assert pickup["operations"] == ["request"], "no ready call"


async def test_once_the_rider_has_collected_the_pizzas_the_refund_goes_ahead(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The pizzas are on their way back to the shop: neither the customer's withdrawal nor
    staff's cancel may leave the customer with neither the pizzas nor the money. The
    collected trip is still followed: its lost "delivered" webhook is caught up by asking
    the partner, and the refund's money goes back."""
    order_id, customer, refund_id, delivery_id, pickup = await _return_booked(
        session_factory, courier_ctx, sandbox
    )
    await _partner_says(session_factory, pickup["id"], deliveries.PICKED_UP)

    with pytest.raises(Conflict, match="already collected"):
        await _withdraw(session_factory, refund_id, customer)
    async with session_factory() as session:
        with pytest.raises(Conflict, match="already collected"):
            await refunds.cancel_return(session, delivery_id, "staff")
    async with session_factory() as session:
        refund = await session.get(Refund, refund_id)
        assert refund is not None and refund.status == RefundStatus.requested
        trip = await deliveries.return_pickup(session, delivery_id, 1)
        assert trip is not None and trip.state == ReturnPickupState.collected

    back = await sandbox.post(
        f"/sandbox/courier/pickups/{pickup['id']}/events",
        json={"type": "delivered", "webhook": False},
    )
    assert back.json()["delivered"] is False, "the webhook went nowhere"
    settings = courier_ctx["settings"]
    asking = dataclasses.replace(settings.partners, courier_silence_seconds=0.0)
    await reconcile.reconcile(
        {**courier_ctx, "settings": dataclasses.replace(settings, partners=asking)}
    )

    async with session_factory() as session:
        current = await deliveries.get(session, delivery_id)
        trip = await deliveries.return_pickup(session, delivery_id, 1)
    assert current is not None and current.status == "returned"
    assert trip is not None and trip.state == ReturnPickupState.finished
    assert len(await events_of(session_factory, order_id, "DeliveryReturned")) == 1


async def test_a_partner_cancel_after_its_rider_collected_leaves_the_refund_to_staff(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The partner calls a trip off with the pizzas on board: cancelling the refund then
    would leave the customer with neither. It stays requested, for staff to settle (here:
    the pizzas came back, Return received)."""
    order_id, _, refund_id, delivery_id, pickup = await _return_booked(
        session_factory, courier_ctx, sandbox
    )
    for news in (deliveries.PICKED_UP, deliveries.PARTNER_CANCELLED):
        await _partner_says(session_factory, pickup["id"], news)

    assert await events_of(session_factory, order_id, "DeliveryReturnCancelled") == []
    async with session_factory() as session:
        refund = await session.get(Refund, refund_id)
        assert refund is not None and refund.status == RefundStatus.requested
        trip = await deliveries.return_pickup(session, delivery_id, 1)
        assert trip is not None and trip.state == ReturnPickupState.finished
        await deliveries.confirm_return(session, delivery_id)
    assert len(await events_of(session_factory, order_id, "DeliveryReturned")) == 1


async def test_a_failed_withdraw_of_a_return_pickup_is_retried(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The request job asked the partner, found the refund withdrawn meanwhile and could
    not cancel the pickup (partner down). The withdraw handler had run before the pickup
    was recorded, so it had nothing to cancel. The job's retry must cancel it."""
    order_id, customer = await delivered(session_factory, courier_ctx)
    delivery_id = await _delivery_id(session_factory, order_id)
    refund_id = await _file(session_factory, order_id, customer)
    asked = await _job(session_factory, order_id, "DeliveryReturnRequested")
    # The first try: the pickup is made and recorded, then the refund is withdrawn and
    # the cancel call does not get through (as if the partner went down right then).
    assert await delivery_tasks.request_return_pickup(courier_ctx, asked) == "requested"
    await _withdraw(session_factory, refund_id, customer)
    [pickup] = await _pickups(sandbox, delivery_id)
    assert pickup["status"] in ("requested", "assigned")

    retried = await delivery_tasks.request_return_pickup(courier_ctx, asked)

    assert retried == "withdrawn"
    [pickup] = await _pickups(sandbox, delivery_id)
    assert pickup["status"] == "cancelled"
    assert pickup["operations"] == ["request", "cancel"]


async def test_a_completed_return_releases_the_partners_rider(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """Staff took the pizzas back themselves: the partner's pickup must not stay
    "assigned" for ever."""
    order_id, customer = await delivered(session_factory, courier_ctx)
    delivery_id = await _delivery_id(session_factory, order_id)
    await _file(session_factory, order_id, customer)
    asked = await _job(session_factory, order_id, "DeliveryReturnRequested")
    assert await delivery_tasks.request_return_pickup(courier_ctx, asked) == "requested"
    async with session_factory() as session:
        await deliveries.complete_return(session, delivery_id)
        await uow.complete(session)
    returned = await _job(session_factory, order_id, "DeliveryReturned")

    assert await delivery_tasks.close_return_pickup(courier_ctx, returned) == "closed"
    assert await delivery_tasks.close_return_pickup(courier_ctx, returned) == "settled"

    [pickup] = await _pickups(sandbox, delivery_id)
    assert pickup["status"] not in ("requested", "assigned")


async def test_a_partner_cancel_cancels_the_refund_and_a_late_one_leaves_a_newer_refund_alone(
    session_factory: Factory, courier_ctx: dict[str, Any]
) -> None:
    """Delivery tells refund only through ``DeliveryReturnCancelled``: the refund still
    waiting for a trip the partner cancelled is cancelled by the partner, and the event of
    an earlier, withdrawn return, handled late, never cancels the refund filed since."""
    order_id, customer = await delivered(session_factory, courier_ctx)
    delivery_id = await _delivery_id(session_factory, order_id)
    await _withdraw(session_factory, await _file(session_factory, order_id, customer), customer)
    late = await _job(session_factory, order_id, "DeliveryReturnCancelled")
    newer = await _file(session_factory, order_id, customer)

    assert await refund_tasks.cancel_for_returned_trip(courier_ctx, late)
    async with session_factory() as session:
        refund = await session.get(Refund, newer)
        assert refund is not None and refund.status == RefundStatus.requested

    async with session_factory() as session:
        await deliveries.partner_cancelled_return(session, delivery_id)
        await complete(session)
    cancelled = await _job(session_factory, order_id, "DeliveryReturnCancelled")
    assert await refund_tasks.cancel_for_returned_trip(courier_ctx, cancelled)
    async with session_factory() as session:
        refund = await session.get(Refund, newer)
        assert refund is not None and refund.status == RefundStatus.cancelled
        assert refund.cancelled_by == "partner"
        current = await deliveries.facts(session, delivery_id)
        assert current is not None and current.status == "delivered"
