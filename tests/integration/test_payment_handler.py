"""The payment handler charges once at the provider, however often it runs."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ordering import service as ordering
from app.payment import tasks
from app.payment.models import Payment
from app.platform.handlers import handle_once
from tests.support.inproc import events_of, place

Factory = async_sessionmaker[AsyncSession]
DECLINED_CARD = "4000000000000002"


async def _payment(db: AsyncSession, order_id: object) -> Payment:
    payment = await db.scalar(select(Payment).where(Payment.order_id == order_id))
    assert payment is not None
    await db.refresh(payment)
    return payment


async def test_running_the_handler_twice_captures_once(
    session_factory: Factory, db: AsyncSession, sandbox: httpx.AsyncClient, ctx: dict[str, Any]
) -> None:
    order_id = await place(session_factory)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    job = placed.to_event().to_job_arg()

    results = await asyncio.gather(tasks.capture(ctx, job), tasks.capture(ctx, job))
    again = await tasks.capture(ctx, job)

    payment = await _payment(db, order_id)
    charges = (
        await sandbox.get("/sandbox/payments/charges", params={"reference": str(payment.id)})
    ).json()
    assert len(charges) == 1 and charges[0]["operations"] == ["capture"]
    assert payment.status == "captured" and payment.provider_ref == charges[0]["id"]
    assert payment.payment_method is not None and payment.payment_method.startswith("pm_")
    assert len(await events_of(session_factory, order_id, "PaymentCaptured")) == 1
    assert "captured" in results and again == "skipped"


async def test_a_declined_card_fails_the_payment_with_the_reason(
    session_factory: Factory, db: AsyncSession, ctx: dict[str, Any]
) -> None:
    order_id = await place(session_factory, card=DECLINED_CARD)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert await tasks.capture(ctx, placed.to_event().to_job_arg()) == "failed"

    payment = await _payment(db, order_id)
    assert (payment.status, payment.failure_reason) == ("failed", "Your card was declined.")
    [failed] = await events_of(session_factory, order_id, "PaymentFailed")
    assert failed.payload["failureReason"] == "Your card was declined."

    # The order followed in the same transaction; the ordering job, should the event
    # reach it too, finds it handled, however often it arrives.
    event = failed.to_event()
    outcomes = [
        await handle_once(
            session_factory, "ordering.on_payment_failed", event, ordering.on_payment_failed
        )
        for _ in range(2)
    ]
    assert outcomes == [False, False]
    [order_failed] = await events_of(session_factory, order_id, "OrderPaymentFailed")
    assert order_failed.payload["reason"] == "Your card was declined."
