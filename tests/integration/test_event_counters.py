"""The business counters (``pizzeria_orders_placed_total`` …) count what a commit made
durable, once, whichever way the use case ends (the unit of work takes the recorded
events for the read side before it commits)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ordering.events import OrderPlaced
from app.platform import metrics
from app.platform.outbox import record_event
from tests.support.inproc import place

Factory = async_sessionmaker[AsyncSession]


def placed() -> float:
    return metrics.REGISTRY.get_sample_value("pizzeria_orders_placed_total") or 0.0


async def test_an_order_placed_through_the_unit_of_work_is_counted_once(
    session_factory: Factory, sandbox_url: str
) -> None:
    before = placed()
    await place(session_factory)
    await place(session_factory)
    assert placed() == before + 2


async def test_an_event_rolled_back_is_not_counted(session_factory: Factory) -> None:
    before = placed()
    order_id = uuid.uuid4()
    event = OrderPlaced(
        order_id=order_id,
        customer_id=uuid.uuid4(),
        items=[],
        total_amount=1000,
        currency="KRW",
        address="1 Test Street",
        version=1,
    )
    async with session_factory() as session:
        record_event(session, event, aggregate_id=order_id, correlation_id=order_id)
        await session.rollback()
        await session.commit()  # a later commit of the same session: still nothing
    assert placed() == before
