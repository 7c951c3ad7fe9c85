"""Courier webhooks lost for good (our endpoint was down longer than the partner keeps
retrying) are made up for: silent pickups are asked for their status and the answer is
applied through the state machines. Real PostgreSQL, Redis, sandbox partner over HTTP,
and a real delivery worker process for the periodic job."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.delivery import reconcile
from app.delivery import service as deliveries
from app.delivery import tasks as delivery_tasks
from app.delivery.gateway import HttpCourierGateway
from app.delivery.models import Delivery
from app.ordering import service as ordering
from app.payment import tasks as payment_tasks
from app.platform.handlers import handle_once
from app.platform.outbox import OutboxRow
from app.platform.settings import get_settings
from app.refund import service as refunds
from tests.support import env
from tests.support.inproc import delivered, events_of, place
from tests.support.processes import spawn, stop
from workers.context import courier_context

Factory = async_sessionmaker[AsyncSession]
#: nobody listens there: every webhook the partner sends is lost
DEAD_SHOP = "http://127.0.0.1:9"


@pytest.fixture
async def courier_ctx(ctx: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The delivery worker's ``ctx``; partners call back to a shop that is not there, and
    any pickup silent for a moment counts as silent."""
    settings = get_settings()
    partners = dataclasses.replace(settings.partners, courier_silence_seconds=0.0)
    quiet = dataclasses.replace(settings, public_url=DEAD_SHOP, partners=partners)
    async with HttpCourierGateway.from_settings(settings) as gateway:
        yield {**courier_context(ctx, gateway), "settings": quiet}


async def _job(session_factory: Factory, order_id: uuid.UUID, kind: str) -> Any:
    return (await events_of(session_factory, order_id, kind))[-1].to_event().to_job_arg()


async def _ready_with_a_rider_asked(
    session_factory: Factory, ctx: dict[str, Any]
) -> tuple[uuid.UUID, uuid.UUID]:
    """A paid order cooked to ``ready`` whose pickup the partner has; its webhooks go
    nowhere. Returns (order id, delivery id)."""
    order_id = await place(session_factory)
    placed = await _job(session_factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed) == "captured"
    [captured] = await events_of(session_factory, order_id, "PaymentCaptured")
    await handle_once(
        session_factory, "test.paid", captured.to_event(), ordering.on_payment_captured
    )
    [paid] = await events_of(session_factory, order_id, "OrderPaid")
    await handle_once(
        session_factory, "test.create", paid.to_event(), deliveries.create_for_paid_order
    )
    created = await _job(session_factory, order_id, "DeliveryCreated")
    assert await delivery_tasks.request_courier(ctx, created) == "requested"
    async with session_factory() as session:
        current = await deliveries.delivery_for_order(session, order_id)
        assert current is not None
        for _ in range(3):  # queued → preparing → baking → ready
            current = await deliveries.advance(session, current.id)
            await session.commit()
    return order_id, current.id


async def _partner_delivers_silently(sandbox: httpx.AsyncClient, reference: str) -> None:
    """The rider collects and delivers; every webhook about it is lost for good."""
    [pickup] = (
        await sandbox.get("/sandbox/courier/pickups", params={"reference": reference})
    ).json()
    for kind in ("rider_assigned", "picked_up", "delivered"):
        sent = await sandbox.post(
            f"/sandbox/courier/pickups/{pickup['id']}/events",
            json={"type": kind, "webhook": False},
        )
        assert sent.status_code == 200 and sent.json()["delivered"] is False


async def _delivery(session_factory: Factory, delivery_id: uuid.UUID) -> Delivery:
    async with session_factory() as session:
        found = await session.get(Delivery, delivery_id)
    assert found is not None
    return found


async def test_a_delivery_whose_webhooks_were_lost_is_completed_from_the_partners_status(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    order_id, delivery_id = await _ready_with_a_rider_asked(session_factory, courier_ctx)
    await _partner_delivers_silently(sandbox, str(delivery_id))
    assert (await _delivery(session_factory, delivery_id)).status == "ready", "no news came"

    tally = await reconcile.reconcile(courier_ctx)

    assert tally["asked"] >= 1 and tally["changed"] >= 1
    done = await _delivery(session_factory, delivery_id)
    assert done.status == "delivered" and done.courier_status == "assigned"
    assert done.rider, "the rider's name came with the status"
    assert [s["status"] for s in done.history][-2:] == ["out_for_delivery", "delivered"]
    assert len(await events_of(session_factory, order_id, "DeliveryDelivered")) == 1
    await reconcile.reconcile(courier_ctx)
    assert len(await events_of(session_factory, order_id, "DeliveryDelivered")) == 1


async def test_two_replicas_reconciling_at_once_ask_about_each_pickup_once(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    _, delivery_id = await _ready_with_a_rider_asked(session_factory, courier_ctx)
    await _partner_delivers_silently(sandbox, str(delivery_id))

    silent_since = datetime.now(UTC)

    async def claim() -> list[reconcile.Silent]:
        async with session_factory() as session, session.begin():
            return await reconcile.claim_silent(session, silent_since, datetime.now(UTC), 1000)

    claims = await asyncio.gather(*(claim() for _ in range(4)))

    refs = [pickup.partner_ref for claimed in claims for pickup in claimed]
    assert len(refs) == len(set(refs)), "no pickup claimed by two runs"
    mine = [p for claimed in claims for p in claimed if p.delivery_id == delivery_id]
    assert len(mine) == 1
    async with session_factory() as session, session.begin():
        now = datetime.now(UTC)
        again = await reconcile.claim_silent(session, now - timedelta(seconds=30), now, 1000)
    assert delivery_id not in [p.delivery_id for p in again], "asked just now: not again yet"


async def test_a_return_whose_webhook_was_lost_is_completed_from_the_partners_status(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    order_id, customer = await delivered(session_factory, courier_ctx)
    async with session_factory() as session:
        command = refunds.FileRefund(customer, order_id, "other", "changed my mind")
        await refunds.file_refund(session, get_settings(), command)
        current = await deliveries.delivery_for_order(session, order_id)
    assert current is not None
    asked = await _job(session_factory, order_id, "DeliveryReturnRequested")
    assert await delivery_tasks.request_return_pickup(courier_ctx, asked) == "requested"
    pickups = (
        await sandbox.get("/sandbox/courier/pickups", params={"reference": f"{current.id}:return"})
    ).json()
    sent = await sandbox.post(
        f"/sandbox/courier/pickups/{pickups[0]['id']}/events",
        json={"type": "delivered", "webhook": False},
    )
    assert sent.json()["delivered"] is False, "the webhook went nowhere"

    await reconcile.reconcile(courier_ctx)

    assert (await _delivery(session_factory, current.id)).status == "returned"
    assert len(await events_of(session_factory, order_id, "DeliveryReturned")) == 1


async def test_the_delivery_worker_reconciles_on_its_own(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The periodic job really runs in the delivery worker process (arq cron)."""
    _, delivery_id = await _ready_with_a_rider_asked(session_factory, courier_ctx)
    await _partner_delivers_silently(sandbox, str(delivery_id))
    worker = spawn(
        ["worker", "delivery"],
        {
            "DATABASE_URL": env.database_url(env.IN_PROCESS_DB),
            "REDIS_URL": env.redis_url(env.IN_PROCESS_REDIS_DB),
            "COURIER_PARTNER_URL": get_settings().partners.courier_url,
            "COURIER_SILENCE_SECONDS": "1",
            "COURIER_RECONCILE_EVERY_SECONDS": "1",
        },
    )
    try:
        async with asyncio.timeout(60):
            while (await _delivery(session_factory, delivery_id)).status != "delivered":
                assert worker.poll() is None, "the delivery worker died"
                await asyncio.sleep(0.2)
    finally:
        stop([worker])
    async with session_factory() as session:
        delivered_events = await session.scalar(
            select(func.count())
            .select_from(OutboxRow)
            .where(
                OutboxRow.type == "DeliveryDelivered", OutboxRow.aggregate_id == str(delivery_id)
            )
        )
    assert delivered_events == 1
