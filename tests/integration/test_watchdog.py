"""The watchdog finds work that stopped moving (an order whose payment never settles, a
paid order with no delivery), and health shows it with the rest of the pipeline's state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.delivery import service as delivery
from app.operations import health, watchdog
from app.ordering import service as ordering
from app.payment import tasks as payment_tasks
from app.platform.db import utcnow
from app.platform.handlers import handle_once
from app.platform.pubsub import Broadcaster
from app.platform.settings import get_settings
from tests.support.inproc import events_of, place

Factory = async_sessionmaker[AsyncSession]


async def test_a_paid_order_with_no_delivery_is_reported_once_overdue(
    session_factory: Factory, ctx: dict[str, Any], redis: Redis
) -> None:
    order_id = await place(session_factory)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed.to_event().to_job_arg()) == "captured"
    [captured] = await events_of(session_factory, order_id, "PaymentCaptured")
    await handle_once(
        session_factory, "test.paid", captured.to_event(), ordering.on_payment_captured
    )
    settings = get_settings().pipeline
    later = utcnow() + timedelta(minutes=settings.stalled_paid_minutes + 1)

    async with session_factory() as session:
        now = await watchdog.stalled(session, settings)
        overdue = await watchdog.stalled(session, settings, later)
    assert order_id not in {f.order_id for f in now.findings}, "not late yet"
    [finding] = [f for f in overdue.findings if f.order_id == order_id]
    assert finding.kind == watchdog.PAID_WITHOUT_DELIVERY

    [paid] = await events_of(session_factory, order_id, "OrderPaid")
    await handle_once(
        session_factory, "test.create", paid.to_event(), delivery.create_for_paid_order
    )
    async with session_factory() as session:
        moving = await watchdog.stalled(session, settings, later)
        report = await health.report(session, get_settings(), Broadcaster(redis, answer_within=2.0))
    assert order_id not in {f.order_id for f in moving.of(watchdog.PAID_WITHOUT_DELIVERY)}
    assert set(report["watchdog"]) == {
        watchdog.PAYMENT_NOT_SETTLED,
        watchdog.PAID_WITHOUT_DELIVERY,
        watchdog.NO_PARTNER_NEWS,
        watchdog.REFUND_WITHOUT_RETURN,
    }
    assert report["web"]["pubsub"]["state"] == "connecting" and report["status"] == "degraded"


async def test_an_order_whose_payment_never_settles_is_reported_once_overdue(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    """The charge job is not getting through (no payment worker): the same finding feeds
    the board, ``/health`` and the ``pizzeria_stuck_orders`` gauge."""
    order_id = await place(session_factory)
    settings = get_settings().pipeline
    later = utcnow() + timedelta(minutes=settings.stalled_payment_minutes + 1)
    async with session_factory() as session:
        now = await watchdog.stalled(session, settings)
        overdue = await watchdog.stalled(session, settings, later)
    assert order_id not in {f.order_id for f in now.findings}, "not late yet"
    [finding] = [f for f in overdue.findings if f.order_id == order_id]
    assert finding.kind == watchdog.PAYMENT_NOT_SETTLED

    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed.to_event().to_job_arg()) == "captured"
    [captured] = await events_of(session_factory, order_id, "PaymentCaptured")
    await handle_once(
        session_factory, "test.paid", captured.to_event(), ordering.on_payment_captured
    )
    async with session_factory() as session:
        settled = await watchdog.stalled(session, settings, later)
    assert order_id not in {f.order_id for f in settled.of(watchdog.PAYMENT_NOT_SETTLED)}
