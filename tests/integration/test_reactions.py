"""Reactions in the recording transaction (``app.platform.uow.Reaction``): the order is
paid in the same commit as its payment's capture, and the relay hands the event to the
ordering job only where no reaction ran."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ordering import tasks as ordering_tasks
from app.ordering.events import OrderFulfilled
from app.ordering.models import Order
from app.payment import tasks as payment_tasks
from app.platform import uow
from app.platform.db import create_session_factory
from app.platform.events import Event
from app.platform.outbox import InboxRow, record_event
from app.platform.redis import create_job_pool
from app.platform.relay import drain
from app.platform.settings import get_settings
from app.subscriptions import SUBSCRIPTIONS
from tests.support.inproc import as_in_the_web, events_of, place

Factory = async_sessionmaker[AsyncSession]
DECLINED_CARD = "4000000000000002"


async def _order_status(session_factory: Factory, order_id: uuid.UUID) -> str:
    async with session_factory() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        return order.status


async def _handlers(session_factory: Factory, event_id: uuid.UUID) -> set[str]:
    async with session_factory() as session:
        rows = await session.scalars(select(InboxRow.handler).where(InboxRow.event_id == event_id))
        return set(rows)


async def _queued(jobs: ArqRedis, queue: str) -> set[str]:
    return {job.job_id for job in await jobs.queued_jobs(queue_name=queue) if job.job_id}


async def _capture(ctx: dict[str, Any], session_factory: Factory, order_id: uuid.UUID) -> str:
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    return str(await payment_tasks.capture(ctx, placed.to_event().to_job_arg()))


async def _captured_order(ctx: dict[str, Any], session_factory: Factory) -> uuid.UUID:
    """An order placed and its payment captured by the payment job's own code."""
    order_id = await place(session_factory)
    assert await _capture(ctx, session_factory, order_id) == "captured"
    return order_id


async def test_the_order_is_paid_in_the_commit_that_captures_its_payment(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    order_id = await _captured_order(ctx, session_factory)

    assert await _order_status(session_factory, order_id) == "paid"
    [captured] = await events_of(session_factory, order_id, "PaymentCaptured")
    [paid] = await events_of(session_factory, order_id, "OrderPaid")
    assert paid.causation_id == str(captured.id)
    assert paid.seq > captured.seq, "recorded after its cause, in its transaction"
    assert await _handlers(session_factory, captured.id) == {ordering_tasks.ON_PAYMENT_CAPTURED}


async def test_the_kitchen_gets_every_line_of_the_paid_order_in_the_order_placed(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    """``OrderPaid`` carries the lines, read with the locked order in one statement."""
    order_id = await _captured_order(ctx, session_factory)

    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    [paid] = await events_of(session_factory, order_id, "OrderPaid")
    assert [(item["pizzaId"], item["qty"]) for item in paid.payload["items"]] == [(1, 2), (2, 1)]
    assert paid.payload["items"] == placed.payload["items"]
    assert all(item["unitPrice"] > 0 and item["name"] for item in paid.payload["items"])


async def test_a_declined_card_refuses_the_order_in_the_same_commit(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    order_id = await place(session_factory, card=DECLINED_CARD)
    assert await _capture(ctx, session_factory, order_id) == "failed"

    assert await _order_status(session_factory, order_id) == "payment_failed"
    [failed] = await events_of(session_factory, order_id, "PaymentFailed")
    [refused] = await events_of(session_factory, order_id, "OrderPaymentFailed")
    assert refused.causation_id == str(failed.id)
    assert await _handlers(session_factory, failed.id) == {ordering_tasks.ON_PAYMENT_FAILED}


async def test_the_relay_skips_a_subscriber_that_reacted_and_hands_on_what_follows(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    order_id = await _captured_order(ctx, session_factory)
    [captured] = await events_of(session_factory, order_id, "PaymentCaptured")
    [paid] = await events_of(session_factory, order_id, "OrderPaid")

    jobs = await create_job_pool(get_settings())
    try:
        await drain(session_factory, jobs, SUBSCRIPTIONS)
        assert f"{captured.id}:{ordering_tasks.ON_PAYMENT_CAPTURED}" not in await _queued(
            jobs, "ordering"
        )
        assert f"{paid.id}:delivery.create" in await _queued(jobs, "delivery")
    finally:
        await jobs.aclose()


async def test_where_no_reaction_ran_the_relay_hands_the_event_to_the_job(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    """An event recorded by a process without the reactions (an older release during a
    rolling upgrade) still reaches the ordering job, which pays the order."""
    older = as_in_the_web(create_session_factory(session_factory.kw["bind"]))
    order_id = await place(older)
    assert await _capture({**ctx, "session_factory": older}, older, order_id) == "captured"
    assert await _order_status(session_factory, order_id) == "placed"
    [captured] = await events_of(session_factory, order_id, "PaymentCaptured")

    jobs = await create_job_pool(get_settings())
    try:
        await drain(session_factory, jobs, SUBSCRIPTIONS)
        assert f"{captured.id}:{ordering_tasks.ON_PAYMENT_CAPTURED}" in await _queued(
            jobs, "ordering"
        )
    finally:
        await jobs.aclose()
    assert await ordering_tasks.on_payment_captured(ctx, captured.to_event().to_job_arg())
    assert await _order_status(session_factory, order_id) == "paid"


async def test_a_reaction_that_fails_rolls_its_cause_back(session_factory: Factory) -> None:
    """A reaction belongs with its cause: if it cannot happen, neither did the cause (the
    job that recorded it is retried), and nothing of either is left."""
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    factory = create_session_factory(session_factory.kw["bind"])
    reacted: list[str] = []

    async def refuse(session: AsyncSession, event: Event) -> None:
        reacted.append(event.type)
        raise RuntimeError("the reaction cannot happen")

    uow.react_in_transaction(factory, {"OrderFulfilled": [uow.Reaction("test.refuse", refuse)]})
    fulfilled = OrderFulfilled(
        order_id=order_id,
        customer_id=customer,
        status="fulfilled",
        amount=0,
        currency="KRW",
        version=3,
    )

    async def cause_and_reaction() -> None:
        async with uow.transaction(factory) as session:
            session.add(InboxRow(handler="test.cause", event_id=placed.id))
            record_event(session, fulfilled, aggregate_id=order_id, correlation_id=order_id)

    with pytest.raises(RuntimeError, match="cannot happen"):
        await cause_and_reaction()
    assert reacted == ["OrderFulfilled"]
    assert await _handlers(session_factory, placed.id) == set()
    assert await events_of(session_factory, order_id, "OrderFulfilled") == []
