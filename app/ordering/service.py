"""Ordering use cases: place an order, and follow its payment.

Placing an order writes the order, its lines, its pending payment (payment context,
in-process), the ``OrderPlaced`` event and the first version of the read model in ONE
transaction: either the customer has an order that will be charged, or nothing at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.menu import service as menu
from app.ordering.models import MAX_LINES, MAX_QTY, Order, OrderLine, OrderStatus
from app.payment import service as payment
from app.platform.errors import FieldError, InvalidInput, NotFound
from app.platform.events import Event
from app.platform.outbox import record_event
from app.platform.settings import Settings
from app.status import projector


@dataclass(frozen=True)
class LineRequest:
    pizza_id: int
    qty: int


@dataclass(frozen=True)
class PlaceOrder:
    customer_id: uuid.UUID
    lines: list[LineRequest]
    address: str
    card_number: str
    idempotency_key: str | None = None


@dataclass(frozen=True)
class PlacedOrder:
    order_id: uuid.UUID
    replayed: bool


def _check_shape(command: PlaceOrder) -> list[FieldError]:
    errors: list[FieldError] = []
    if not command.lines:
        errors.append(FieldError("items", "Add at least one pizza."))
    elif len(command.lines) > MAX_LINES:
        errors.append(FieldError("items", f"At most {MAX_LINES} different lines per order."))
    for i, line in enumerate(command.lines):
        if not 1 <= line.qty <= MAX_QTY:
            errors.append(FieldError(f"items[{i}].qty", f"Choose 1 to {MAX_QTY}."))
    address = command.address.strip()
    if not address:
        errors.append(FieldError("address", "Tell us where to deliver."))
    elif len(address) > 300:
        errors.append(FieldError("address", "Please use at most 300 characters."))
    return errors


async def place_order(
    session: AsyncSession, settings: Settings, command: PlaceOrder
) -> PlacedOrder:
    """Validate, then commit order + lines + payment + event + view together."""
    errors = _check_shape(command)
    try:
        card_number = payment.normalize_card_number(command.card_number)
    except InvalidInput as exc:
        errors.extend(exc.errors)
        card_number = ""
    pizzas = await menu.find_pizzas(session, (line.pizza_id for line in command.lines))
    for i, line in enumerate(command.lines):
        if line.pizza_id not in pizzas:
            errors.append(FieldError(f"items[{i}].pizzaId", "This pizza is not on the menu."))
    if errors:
        raise InvalidInput(errors)

    order_id = uuid.uuid4()
    total = sum(pizzas[line.pizza_id].price * line.qty for line in command.lines)
    currency = settings.shop.currency
    inserted = await session.scalar(
        pg_insert(Order)
        .values(
            id=order_id,
            customer_id=command.customer_id,
            status=OrderStatus.placed.value,
            total_amount=total,
            currency=currency,
            address=command.address.strip(),
            idempotency_key=command.idempotency_key,
            version=1,
        )
        .on_conflict_do_nothing(index_elements=[Order.customer_id, Order.idempotency_key])
        .returning(Order.id)
    )
    if inserted is None:
        # Same Idempotency-Key: the first request's order (it has committed: the conflict
        # check waited for it), never a second one.
        await session.rollback()
        existing = await session.scalar(
            select(Order.id).where(
                Order.customer_id == command.customer_id,
                Order.idempotency_key == command.idempotency_key,
            )
        )
        if existing is None:
            raise NotFound("order not found")
        return PlacedOrder(existing, replayed=True)

    items = [
        {
            "order_id": order_id,
            "position": i,
            "pizza_id": line.pizza_id,
            "name": pizzas[line.pizza_id].name,
            "qty": line.qty,
            "unit_price": pizzas[line.pizza_id].price,
        }
        for i, line in enumerate(command.lines)
    ]
    await session.execute(insert(OrderLine), items)
    await payment.open_payment(
        session, order_id=order_id, amount=total, currency=currency, card_number=card_number
    )
    event = await record_event(
        session,
        type="OrderPlaced",
        aggregate_type="order",
        aggregate_id=order_id,
        correlation_id=order_id,
        payload={
            "orderId": str(order_id),
            "customerId": str(command.customer_id),
            "items": [
                {
                    "pizzaId": item["pizza_id"],
                    "name": item["name"],
                    "qty": item["qty"],
                    "unitPrice": item["unit_price"],
                }
                for item in items
            ],
            "totalAmount": total,
            "currency": currency,
            "address": command.address.strip(),
            "version": 1,
        },
    )
    # Read-your-writes: the order page can be shown the moment we redirect to it.
    await projector.apply(session, event)
    await session.commit()
    return PlacedOrder(order_id, replayed=False)


async def _settle(
    session: AsyncSession, event: Event, target: OrderStatus, event_type: str
) -> None:
    order = await session.get(Order, uuid.UUID(event.payload["orderId"]), with_for_update=True)
    if order is None or order.status != OrderStatus.placed:
        return
    order.move_to(target)
    await record_event(
        session,
        type=event_type,
        aggregate_type="order",
        aggregate_id=order.id,
        correlation_id=order.id,
        causation=event,
        payload={
            "orderId": str(order.id),
            "customerId": str(order.customer_id),
            "status": order.status,
            "amount": order.total_amount,
            "currency": order.currency,
            "reason": event.payload.get("failureReason"),
            "version": order.version,
        },
    )


async def on_payment_captured(session: AsyncSession, event: Event) -> None:
    await _settle(session, event, OrderStatus.paid, "OrderPaid")


async def on_payment_failed(session: AsyncSession, event: Event) -> None:
    await _settle(session, event, OrderStatus.payment_failed, "OrderPaymentFailed")
