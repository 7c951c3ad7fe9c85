"""Money after crashes (issue 9, found by the chaos suite): a payment worker SIGKILLed
after the provider charged the card, then a cancel, must still give the money back, and
exactly once. Real relay and workers against a database and a Redis the test owns; the
sandbox provider over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ordering import service as ordering
from app.ordering.models import Order
from app.payment import tasks as payment_tasks
from app.payment.models import Payment
from app.payment.service import payment_for_order
from tests.support.inproc import events_of, handled, place
from tests.support.pipeline import Pipeline, eventually

Factory = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.timeout(240)


async def _payment(factory: Factory, order_id: uuid.UUID) -> Payment:
    async with factory() as session:
        payment = await session.scalar(select(Payment).where(Payment.order_id == order_id))
    assert payment is not None
    return payment


async def _charges(sandbox: httpx.AsyncClient, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    response = await sandbox.get("/sandbox/payments/charges", params={"reference": str(payment_id)})
    return response.json()  # type: ignore[no-any-return]


async def _cancel(factory: Factory, order_id: uuid.UUID) -> None:
    async with factory() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        customer = order.customer_id
    async with factory() as session:
        await ordering.cancel_order(session, order_id, customer)


async def test_a_charge_made_before_the_worker_died_is_voided_after_a_cancel(
    fresh: Pipeline, factory: Factory
) -> None:
    """The provider charges at once but answers after 3 s (our timeout is 2 s): every try
    times out, but the card is charged. The worker is SIGKILLed, the customer cancels, a
    new worker takes the job over. It must ask the provider what the first try did, and
    the card must be voided, once."""
    order_id = await place(factory)
    payment = await _payment(factory, order_id)
    async with httpx.AsyncClient(base_url=fresh.sandbox_url) as sandbox:
        await sandbox.put("/sandbox/knobs/payment", json={"answerDelayMs": 3000})
        try:
            quick = {"PARTNER_TIMEOUT": "2"}
            fresh.start("relay", **quick)
            worker = fresh.start("worker", "payment", **quick)

            async def charged() -> bool:
                return any(
                    "capture" in c["operations"] for c in await _charges(sandbox, payment.id)
                )

            await eventually(charged, "the card charged at the provider", timeout=90)
            fresh.kill(worker)
            assert (await _payment(factory, order_id)).status == "pending"
            await _cancel(factory, order_id)
        finally:
            await sandbox.put("/sandbox/knobs/payment", json={"answerDelayMs": 0})
        fresh.start("worker", "payment", **quick)

        async def settled() -> bool:
            return (await _payment(factory, order_id)).status == "voided" and any(
                "void" in c["operations"] for c in await _charges(sandbox, payment.id)
            )

        await eventually(settled, "the payment voided at the provider", timeout=90)
        [charge] = await _charges(sandbox, payment.id)
        assert charge["operations"] == ["capture", "void"]
        assert (await _payment(factory, order_id)).provider_ref == charge["id"]


async def test_a_charge_that_lands_after_an_uncharged_void_is_voided_at_the_provider(
    session_factory: Factory, ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """Two copies of the capture job: one voids the cancelled payment as uncharged while
    the other's charge is still on its way. The copy whose charge landed voids it."""
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    job = placed.to_event().to_job_arg()
    async with session_factory() as session:
        payment = await payment_for_order(session, order_id)
    assert payment is not None and payment.payment_method is not None
    async with session_factory() as session:
        await ordering.cancel_order(session, order_id, customer)
    assert await payment_tasks.capture(ctx, job) == "voided"  # nothing charged yet
    # the other copy's charge (it read the payment before the cancel) lands now
    await ctx["payment_provider"].charge(
        reference=str(payment.id),
        amount=payment.amount,
        currency=payment.currency,
        payment_method=payment.payment_method,
        idempotency_key=f"{payment.id}:capture",
    )

    assert await payment_tasks.capture(ctx, job) == "voided a late charge"
    assert await payment_tasks.capture(ctx, job) == "skipped"  # done: once is enough

    [charge] = await _charges(sandbox, payment.id)
    assert charge["operations"] == ["capture", "void"]
    async with session_factory() as session:
        again = await payment_for_order(session, order_id)
    assert again is not None and (again.status, again.provider_ref) == ("voided", charge["id"])


class _Died(Exception):
    """The payment worker killed right after the capture's commit."""


async def test_a_charge_that_landed_after_a_void_stays_to_do_until_it_is_given_back(
    session_factory: Factory, ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """A copy of the capture voids the cancelled payment as uncharged while this one's
    charge is on its way; this one records the outcome (it finds the void, under the
    payment's lock) and dies before voiding its charge at the provider. The capture is
    not done in PostgreSQL (no inbox row), so the job is run again (its retry, or the
    reconciler if Redis lost it), and the charge is given back."""
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    job = placed.to_event().to_job_arg()
    provider = ctx["payment_provider"]

    class ChargedAfterTheVoid:
        """The provider as this copy sees it: the cancel and the other copy's void come
        in before its charge lands; it dies when it asks about the charge after."""

        async def charge(self, **request: Any) -> Any:
            await _cancel(session_factory, order_id)
            assert await payment_tasks.capture(ctx, job) == "voided"  # the other copy
            return await provider.charge(**request)

        async def find_charge(self, **request: Any) -> Any:
            raise _Died

    with pytest.raises(_Died):
        await payment_tasks.capture({**ctx, "payment_provider": ChargedAfterTheVoid()}, job)
    assert not await handled(session_factory, payment_tasks.CAPTURE, placed.id), "still to do"
    payment = await _payment(session_factory, order_id)
    [charge] = await _charges(sandbox, payment.id)
    assert charge["operations"] == ["capture"], "charged, not given back yet"

    assert await payment_tasks.capture(ctx, job) == "voided a late charge"
    [charge] = await _charges(sandbox, payment.id)
    assert charge["operations"] == ["capture", "void"]
