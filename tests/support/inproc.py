"""Running our real handlers and arq workers inside the test process."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from arq.worker import Worker
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ordering import service as ordering
from app.platform.outbox import InboxRow, OutboxRow
from app.platform.settings import get_settings
from app.platform.uow import read_your_writes
from app.status.service import project_in_transaction
from workers import settings_for

GOOD_CARD = "4242424242424242"


def as_in_the_web(
    factory: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """``factory`` with the web's read side (``app.platform.uow``): a use case's events
    are projected as it completes. Placing an order needs it: the order's view is
    written in the placement transaction, and no worker projects ``OrderPlaced``. No
    live page is told (these tests watch none)."""
    read_your_writes(factory, project_in_transaction, _no_live_pages)
    return factory


async def _no_live_pages(told: Sequence[tuple[str, str]]) -> None:
    return None


def place_command(
    customer_id: uuid.UUID | None = None, card: str = GOOD_CARD, key: str | None = None
) -> ordering.PlaceOrder:
    return ordering.PlaceOrder(
        customer_id=customer_id or uuid.uuid4(),
        lines=[ordering.LineRequest(1, 2), ordering.LineRequest(2, 1)],
        address="Via Roma 1, Napoli",
        card_number=card,
        idempotency_key=key,
    )


async def place(session_factory: async_sessionmaker[AsyncSession], **kwargs: Any) -> uuid.UUID:
    async with session_factory() as session:
        placed = await ordering.place_order(session, get_settings(), place_command(**kwargs))
    return placed.order_id


async def events_of(
    session_factory: async_sessionmaker[AsyncSession],
    correlation_id: uuid.UUID,
    type: str | None = None,
) -> list[OutboxRow]:
    async with session_factory() as session:
        query = select(OutboxRow).where(OutboxRow.correlation_id == str(correlation_id))
        if type:
            query = query.where(OutboxRow.type == type)
        return list(await session.scalars(query.order_by(OutboxRow.seq)))


def burst_worker(queue: str) -> Worker:
    """A real arq worker for ``queue`` that stops once the queue is empty."""
    cls = settings_for(queue)
    options = {k: v for k, v in vars(cls).items() if not k.startswith("__")}
    options.update(burst=True, handle_signals=False, poll_delay=0.05)
    return Worker(**options)


async def run_burst(queue: str) -> Worker:
    worker = burst_worker(queue)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def delivered(
    session_factory: async_sessionmaker[AsyncSession], ctx: dict[str, Any]
) -> tuple[uuid.UUID, uuid.UUID]:
    """An order paid, cooked and delivered by running the real handlers in order
    (no workers): returns ``(order_id, customer_id)``."""
    from app.delivery import service as delivery
    from app.delivery.models import DeliveryStatus
    from app.payment import tasks as payment_tasks
    from app.platform.handlers import handle_once

    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed.to_event().to_job_arg()) == "captured"
    [captured] = await events_of(session_factory, order_id, "PaymentCaptured")
    await handle_once(
        session_factory, "test.paid", captured.to_event(), ordering.on_payment_captured
    )
    [paid] = await events_of(session_factory, order_id, "OrderPaid")
    await handle_once(
        session_factory, "test.create", paid.to_event(), delivery.create_for_paid_order
    )
    async with session_factory() as session:
        current = await delivery.delivery_for_order(session, order_id)
        assert current is not None
        while current.status != DeliveryStatus.delivered:
            current = await delivery.advance(session, current.id)
            await session.commit()
    [done] = await events_of(session_factory, order_id, "DeliveryDelivered")
    await handle_once(
        session_factory, "test.fulfil", done.to_event(), ordering.on_delivery_delivered
    )
    return order_id, customer


async def handled(
    session_factory: async_sessionmaker[AsyncSession], handler: str, event_id: uuid.UUID
) -> bool:
    """Whether PostgreSQL says ``handler`` is done with the event (its inbox row)."""
    async with session_factory() as session:
        return await session.get(InboxRow, (handler, event_id)) is not None
