"""The unit of work writes a transaction's events into the outbox in one statement,
just before it commits, in the order they were recorded; a rollback writes none. An
event that leaves the relay nothing to hand over is written published, and wakes no
relay."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ordering.events import OrderCancelled, OrderPaymentFailed
from app.platform import uow
from app.platform.db import asyncpg_dsn
from app.platform.outbox import NOTIFY_CHANNEL, record_event
from tests.support.inproc import events_of, place
from tests.support.sent import SentStatements

Factory = async_sessionmaker[AsyncSession]
_INSERT = "INSERT INTO platform.outbox"


def _failure(order_id: uuid.UUID, customer: uuid.UUID, reason: str) -> OrderPaymentFailed:
    return OrderPaymentFailed(
        order_id=order_id,
        customer_id=customer,
        status="payment_failed",
        amount=0,
        currency="KRW",
        reason=reason,
        version=2,
    )


async def test_a_transactions_events_go_to_the_outbox_in_one_statement_in_order(
    session_factory: Factory, sandbox_url: str
) -> None:
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    reasons = ["first", "second", "third"]
    with SentStatements(session_factory) as sent:
        async with uow.transaction(session_factory) as session:
            recorded = [
                record_event(
                    session,
                    _failure(order_id, customer, reason),
                    aggregate_id=order_id,
                    correlation_id=order_id,
                )
                for reason in reasons
            ]
    # one statement for the transaction's three events (with the view's save: the last
    # statement before the commit)
    [written] = sent.containing(_INSERT)
    assert "UPDATE status.order_views" in written
    rows = await events_of(session_factory, order_id, "OrderPaymentFailed")
    assert [row.id for row in rows] == [e.id for e in recorded], "in the order recorded"
    assert [row.payload["reason"] for row in rows] == reasons
    assert rows[0].to_event() == recorded[0], "the row is the event subscribers get"


async def test_events_of_a_transaction_that_rolls_back_are_never_written(
    session_factory: Factory, sandbox_url: str
) -> None:
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)

    async def failing_change() -> None:
        async with uow.transaction(session_factory) as session:
            record_event(
                session,
                _failure(order_id, customer, "never"),
                aggregate_id=order_id,
                correlation_id=order_id,
            )
            raise RuntimeError("the change fails")

    with SentStatements(session_factory) as sent, pytest.raises(RuntimeError):
        await failing_change()
    assert sent.containing(_INSERT) == []
    assert await events_of(session_factory, order_id, "OrderPaymentFailed") == []


@pytest.fixture
async def relay_wakes(session_factory: Factory) -> AsyncIterator[asyncio.Queue[str]]:
    """The notifications a relay listening on the outbox's channel would get."""
    url = session_factory.kw["bind"].url.render_as_string(hide_password=False)
    listener = await asyncpg.connect(asyncpg_dsn(url))
    wakes: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: wakes.put_nowait(args[-1]))
    yield wakes
    await listener.close()


async def _woken(wakes: asyncio.Queue[str]) -> bool:
    try:
        await asyncio.wait_for(wakes.get(), timeout=0.5)
    except TimeoutError:
        return False
    return True


async def test_an_event_that_leaves_the_relay_nothing_is_written_published_and_wakes_none(
    session_factory: Factory, relay_wakes: asyncio.Queue[str], sandbox_url: str
) -> None:
    """``OrderPaymentFailed`` has no subscriber: nothing for the relay, so no NOTIFY and
    no batch for it. ``OrderCancelled`` has (the payment's void): the relay is woken."""
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    # the placement's event is the payment's (no follow-up here): the statement trigger
    # fires for its row though it is written as a CTE with the order's other rows
    assert await _woken(relay_wakes)
    async with uow.transaction(session_factory) as session:
        failure = _failure(order_id, customer, "declined")
        record_event(session, failure, aggregate_id=order_id, correlation_id=order_id)
    assert not await _woken(relay_wakes)
    [settled] = await events_of(session_factory, order_id, "OrderPaymentFailed")
    assert settled.published_at is not None and settled.finished_at is not None

    async with uow.transaction(session_factory) as session:
        cancelled = OrderCancelled(
            order_id=order_id,
            customer_id=customer,
            status="cancelled",
            amount=0,
            currency="KRW",
            version=2,
        )
        record_event(session, cancelled, aggregate_id=order_id, correlation_id=order_id)
        record_event(session, failure, aggregate_id=order_id, correlation_id=order_id)
    assert await _woken(relay_wakes), "one row of the INSERT is for the relay"
    [waiting] = await events_of(session_factory, order_id, "OrderCancelled")
    assert waiting.published_at is None and waiting.finished_at is None
