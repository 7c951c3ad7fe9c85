"""Placing an order is one transaction: order, lines, payment, outbox and view, or nothing."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ordering import service as ordering
from app.ordering.models import Order, OrderLine
from app.payment import service as payment_service
from app.payment.models import Payment
from app.platform.errors import InvalidInput, Unavailable
from app.platform.outbox import OutboxRow
from app.platform.settings import get_settings
from app.status.models import OrderView
from tests.support.inproc import place, place_command
from tests.support.processes import free_port
from tests.support.sent import SentStatements

Factory = async_sessionmaker[AsyncSession]

# Placing an order exchanges the card for a token at the (sandbox) payment provider.
pytestmark = pytest.mark.usefixtures("sandbox_url")


async def _rows_for(db: AsyncSession, order_id: uuid.UUID) -> dict[str, int]:
    async def count(query: object) -> int:
        return int(await db.scalar(query) or 0)  # type: ignore[call-overload]

    return {
        "orders": await count(select(func.count()).select_from(Order).where(Order.id == order_id)),
        "lines": await count(
            select(func.count()).select_from(OrderLine).where(OrderLine.order_id == order_id)
        ),
        "payments": await count(
            select(func.count()).select_from(Payment).where(Payment.order_id == order_id)
        ),
        "events": await count(
            select(func.count())
            .select_from(OutboxRow)
            .where(OutboxRow.correlation_id == str(order_id))
        ),
        "views": await count(
            select(func.count()).select_from(OrderView).where(OrderView.order_id == order_id)
        ),
    }


#: what one placed order (two lines) writes
EVERY_ROW_ONCE = {"orders": 1, "lines": 2, "payments": 1, "events": 1, "views": 1}


async def test_order_lines_payment_event_and_view_commit_together(
    session_factory: Factory, db: AsyncSession
) -> None:
    order_id = await place(session_factory)

    assert await _rows_for(db, order_id) == EVERY_ROW_ONCE
    order = await db.get(Order, order_id)
    payment = await db.scalar(select(Payment).where(Payment.order_id == order_id))
    event = await db.scalar(select(OutboxRow).where(OutboxRow.correlation_id == str(order_id)))
    assert order is not None and payment is not None and event is not None
    assert (order.status, order.total_amount) == ("placed", 2 * 15_900 + 13_900)  # won
    assert (payment.status, payment.card_last4) == ("pending", "4242")
    assert payment.amount == order.total_amount
    assert event.type == "OrderPlaced"
    assert "4242424242424242" not in str(event.payload), "card numbers never travel in events"


async def test_an_order_without_a_coupon_is_one_statement_without_begin_or_commit(
    session_factory: Factory, db: AsyncSession
) -> None:
    """Order, lines, payment, event and view are rows the placement only adds: written
    together as the transaction's one statement, which PostgreSQL commits by itself
    (``Statement.add``). Before, seven round trips: BEGIN, five inserts, COMMIT."""
    command = dataclasses.replace(place_command(), customer_name="Ada")  # as the web has it
    with SentStatements(session_factory) as sent:
        async with session_factory() as session:
            placed = await ordering.place_order(session, get_settings(), command)
    order_id = placed.order_id
    assert sent.starting("BEGIN") == [] and sent.starting("COMMIT") == []
    [write] = sent.containing("INSERT INTO")
    for table in (
        "ordering.orders ",
        "ordering.order_lines ",
        "payment.payments ",
        "platform.outbox ",
        "status.order_views ",
    ):
        assert f"INSERT INTO {table}" in write
    assert await _rows_for(db, order_id) == EVERY_ROW_ONCE


async def test_a_failure_part_way_leaves_nothing_behind(
    session_factory: Factory, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash after the order, lines and payment were written but before the event."""
    seen: list[uuid.UUID] = []
    real_open_payment = payment_service.open_payment

    def open_payment_then_note(session: AsyncSession, **kwargs: object) -> uuid.UUID:
        seen.append(kwargs["order_id"])  # type: ignore[arg-type]
        return real_open_payment(session, **kwargs)  # type: ignore[arg-type]

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(ordering.payment, "open_payment", open_payment_then_note)
    monkeypatch.setattr(ordering, "record_event", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        await place(session_factory)

    assert len(seen) == 1
    assert await _rows_for(db, seen[0]) == {
        "orders": 0,
        "lines": 0,
        "payments": 0,
        "events": 0,
        "views": 0,
    }


async def test_bad_input_names_every_field_and_writes_nothing(session_factory: Factory) -> None:
    customer = uuid.uuid4()
    command = ordering.PlaceOrder(
        customer_id=customer,
        lines=[ordering.LineRequest(999, 1), ordering.LineRequest(1, 21)],
        address="   ",
        card_number="12ab",
    )
    async with session_factory() as session:
        with pytest.raises(InvalidInput) as raised:
            await ordering.place_order(session, get_settings(), command)
        fields = set(raised.value.by_field())
        assert fields == {"items[0].pizza_id", "items[1].qty", "address", "card_number"}
        count = await session.scalar(
            select(func.count()).select_from(Order).where(Order.customer_id == customer)
        )
        assert count == 0


async def test_same_idempotency_key_returns_the_first_order(session_factory: Factory) -> None:
    customer = uuid.uuid4()
    first = await place(session_factory, customer_id=customer, key="checkout-1")
    async with session_factory() as session:
        again = await ordering.place_order(
            session, get_settings(), place_command(customer_id=customer, key="checkout-1")
        )
    assert again == ordering.PlacedOrder(first, replayed=True)
    other = await place(session_factory, customer_id=uuid.uuid4(), key="checkout-1")
    assert other != first, "keys are scoped per customer"


async def test_a_retry_the_provider_cannot_serve_is_answered_with_its_order(
    session_factory: Factory,
) -> None:
    """A retried request no longer looks its key up before the card is tokenized: the
    order insert's conflict tells it. With the provider away, the retry still gets the
    order its first request made; a first request gets 503, and writes nothing."""
    customer = uuid.uuid4()
    first = await place(session_factory, customer_id=customer, key="checkout-away")
    settings = get_settings()
    away = dataclasses.replace(
        settings,
        partners=dataclasses.replace(
            settings.partners, payment_url=f"http://127.0.0.1:{free_port()}"
        ),
    )
    async with payment_service.card_vault(away) as vault, session_factory() as session:
        again = await ordering.place_order(
            session, away, place_command(customer_id=customer, key="checkout-away"), vault=vault
        )
        assert again == ordering.PlacedOrder(first, replayed=True)
        with pytest.raises(Unavailable):
            await ordering.place_order(
                session, away, place_command(customer_id=customer, key="checkout-new"), vault=vault
            )
    async with session_factory() as db:
        orders = await db.scalar(
            select(func.count()).select_from(Order).where(Order.customer_id == customer)
        )
    assert orders == 1


async def test_a_reused_key_with_another_body_is_refused(session_factory: Factory) -> None:
    customer = uuid.uuid4()
    await place(session_factory, customer_id=customer, key="checkout-2")
    elsewhere = dataclasses.replace(
        place_command(customer_id=customer, key="checkout-2"), address="Via Toledo 2, Napoli"
    )
    async with session_factory() as session:
        with pytest.raises(InvalidInput) as refused:
            await ordering.place_order(session, get_settings(), elsewhere)
    assert [e.field for e in refused.value.errors] == ["idempotency_key"]


async def test_the_name_read_at_sign_in_goes_with_the_order(session_factory: Factory) -> None:
    """The access check reads the account's name with its role (``standing``), and the
    placement uses it instead of reading it again; without one it still reads it."""
    from app.accounts import service as accounts
    from app.platform.outbox import OutboxRow

    async with session_factory() as session:
        user = await accounts.sign_up(
            session, email=f"{uuid.uuid4()}@example.com", password="pizza-demo-1234", name="Ada"
        )
        standing = await accounts.standing(session, user.id)
    assert standing is not None and standing.name == "Ada"

    async def named(order_id: uuid.UUID) -> str | None:
        async with session_factory() as session:
            row = await session.scalar(
                select(OutboxRow).where(
                    OutboxRow.correlation_id == str(order_id), OutboxRow.type == "OrderPlaced"
                )
            )
        assert row is not None
        return row.payload["customerName"]

    given = dataclasses.replace(place_command(customer_id=user.id), customer_name="Ada L.")
    async with session_factory() as session:
        placed = await ordering.place_order(session, get_settings(), given)
    assert await named(placed.order_id) == "Ada L.", "the caller's name, not a second read"
    async with session_factory() as session:
        unnamed = await ordering.place_order(session, get_settings(), place_command(user.id))
    assert await named(unnamed.order_id) == "Ada"
