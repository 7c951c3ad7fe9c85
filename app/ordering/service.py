"""Ordering use cases: place an order, and follow its payment.

Placing an order writes the order, its lines, its pending payment (payment context,
in-process), the ``OrderPlaced`` event and the first version of the read model in ONE
transaction: either the customer has an order that will be charged, or nothing at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

import msgspec
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts
from app.coupon import service as coupon
from app.delivery import service as delivery
from app.delivery.events import DeliveryDelivered
from app.menu import service as menu
from app.ordering.events import (
    OrderCancelled,
    OrderFulfilled,
    OrderItem,
    OrderPaid,
    OrderPaymentFailed,
    OrderPlaced,
    OrderRefunded,
)
from app.ordering.models import MAX_LINES, MAX_QTY, Order, OrderLine, OrderStatus
from app.payment import service as payment
from app.payment.events import PaymentCaptured, PaymentFailed, PaymentRefunded
from app.platform import logs
from app.platform.aggregate import AggregateRows
from app.platform.db import lookup, read_only, utcnow, violated_constraint
from app.platform.driver import Statement
from app.platform.errors import Conflict, FieldError, InvalidInput, NotFound, Unavailable
from app.platform.events import Event
from app.platform.i18n import N_
from app.platform.outbox import record_event
from app.platform.settings import Settings
from app.platform.text import plain, storable
from app.platform.uow import complete
from app.words import status_label

log = logging.getLogger(__name__)


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
    coupon_code: str | None = None
    phone: str = ""
    note: str = ""
    #: the customer's name when the caller has it already (None: read it)
    customer_name: str | None = None


class PartnerGate(Protocol):
    """Refuses new orders (503) while a partner they depend on is known to be down."""

    async def ensure_open_for_orders(self) -> None: ...


@dataclass(frozen=True)
class PlacedOrder:
    order_id: uuid.UUID
    replayed: bool


def _check_shape(command: PlaceOrder) -> list[FieldError]:
    errors: list[FieldError] = []
    if not command.lines:
        errors.append(FieldError("items", N_("Add at least one pizza.")))
    elif len(command.lines) > MAX_LINES:
        errors.append(
            FieldError("items", N_("At most %(n)s different lines per order.", n=MAX_LINES))
        )
    for i, line in enumerate(command.lines):
        if not 1 <= line.qty <= MAX_QTY:
            errors.append(FieldError(f"items[{i}].qty", N_("Choose 1 to %(n)s.", n=MAX_QTY)))
    ordered: dict[int, list[int]] = {}
    for line in command.lines:  # one pizza on several lines counts once, as in the basket
        ordered.setdefault(line.pizza_id, []).append(max(line.qty, 0))
    if any(len(qtys) > 1 and sum(qtys) > MAX_QTY for qtys in ordered.values()):
        errors.append(
            FieldError("items", N_("An order holds at most %(n)s of one pizza.", n=MAX_QTY))
        )
    key = command.idempotency_key
    if key is not None and (len(key) > 100 or not storable(key)):
        errors.append(FieldError("idempotency_key", N_("Use at most 100 printable characters.")))
    address = command.address.strip()
    if not address or not plain(address):
        errors.append(FieldError("address", N_("Tell us where to deliver.")))
    elif len(address) > 300:
        errors.append(FieldError("address", N_("Please use at most 300 characters.")))
    phone = command.phone.strip()
    if phone and not _PHONE.fullmatch(phone):
        errors.append(FieldError("phone", N_("Enter a phone number the rider can call.")))
    code = coupon.normalize_code(command.coupon_code or "")
    if code and not coupon.plausible_code(code):  # too long for the column, or a NUL
        errors.append(FieldError("coupon_code", N_("This coupon code is not valid.")))
    note = command.note.strip()
    if not plain(note):
        errors.append(FieldError("note", N_("Please use printable characters.")))
    elif len(note) > 300:
        errors.append(FieldError("note", N_("Please use at most 300 characters.")))
    return errors


#: Digits with the usual separators, 6 to 20 digits: "+82 10-1234-5678", "(030) 123 45".
_PHONE = re.compile(r"\+?(?:[\s().-]*\d){6,20}[\s().-]*")


async def place_order(
    session: AsyncSession,
    settings: Settings,
    command: PlaceOrder,
    gate: PartnerGate | None = None,
    vault: payment.CardVault | None = None,
) -> PlacedOrder:
    """Validate, exchange the card for a token at the provider (``vault``; the provider
    from ``settings`` unless given), then commit order + lines + payment + coupon + event
    + view together."""
    if gate is not None:
        await gate.ensure_open_for_orders()
    try:
        if vault is not None:
            return await _place(session, settings, command, vault)
        async with payment.card_vault(settings) as provider:
            return await _place(session, settings, command, provider)
    except BaseException:
        await session.rollback()  # nothing half-written survives, whatever failed
        raise


async def coupon_discount(
    session: AsyncSession, customer_id: uuid.UUID, code: str, subtotal: int
) -> int:
    """What a coupon code typed at the checkout takes off ``subtotal``, as placing the
    order would take it (422 on ``coupon_code`` when it cannot be used); 0 for no code."""
    code = code.strip()
    if not code:
        return 0
    return min(subtotal, await coupon.discount_of(session, code, customer_id))


def request_fingerprint(command: PlaceOrder, card_number: str) -> str:
    """What an order request asks for, so a reused Idempotency-Key with another body is
    caught. The card enters only by its last four digits."""
    what = {
        "lines": [[line.pizza_id, line.qty] for line in command.lines],
        "address": command.address.strip(),
        "coupon": coupon.normalize_code(command.coupon_code) if command.coupon_code else None,
        "card": card_number[-4:],
        "phone": command.phone.strip(),
        "note": command.note.strip(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


#: built once, the values bound per call (inline values cost a cache key walk each time)
_BY_KEY = select(Order.id, Order.request_fingerprint).where(
    Order.customer_id == bindparam("customer_id"),
    Order.idempotency_key == bindparam("key"),
)


async def _replay(
    session: AsyncSession, command: PlaceOrder, fingerprint: str
) -> PlacedOrder | None:
    """The order an earlier request with this Idempotency-Key made, or None; 422 when
    that request asked for something else."""
    if command.idempotency_key is None:
        return None
    found = (
        await session.execute(
            _BY_KEY, {"customer_id": command.customer_id, "key": command.idempotency_key}
        )
    ).one_or_none()
    if found is None:
        return None
    if found.request_fingerprint not in (None, fingerprint):
        raise InvalidInput.single(
            "idempotency_key",
            N_("This Idempotency-Key was used for a different order; use a new key."),
        )
    return PlacedOrder(found.id, replayed=True)


async def _coupon_problems(session: AsyncSession, command: PlaceOrder) -> list[FieldError]:
    """A coupon code that cannot be used, named with the other mistakes found before the
    card is exchanged: a customer who mistyped both hears of both at once, instead of
    typing the card again after fixing it. Alone, a coupon is checked where it is
    redeemed, locked, after a retried request has been answered with its first order
    (whose redeemed coupon a check here would refuse)."""
    code = coupon.normalize_code(command.coupon_code or "")
    if not code or not coupon.plausible_code(code):  # none, or named by ``_check_shape``
        return []
    async with read_only(session) as reader:
        try:
            await coupon.discount_of(reader, code, command.customer_id)
        except InvalidInput as exc:
            return exc.errors
    return []


#: built once, the values bound per call (inline values cost a cache key walk each time);
#: Core statements on the tables, not the ORM's bulk insert: the same SQL for a third of
#: the CPU (nothing is read back into objects)
#: added (``Statement.add``): without a coupon, the order, its lines, its payment, its
#: event and its view are one statement (no BEGIN, no COMMIT)
_ORDERS = cast(Table, Order.__table__)
_NEW_ORDER = Statement(insert(_ORDERS))
_NEW_LINES = Statement(insert(cast(Table, OrderLine.__table__)))
#: the unique key a retried request's order breaks (``Order.__table_args__``)
_SAME_KEY = "uq_orders_customer_idempotency"


async def _place(
    session: AsyncSession, settings: Settings, command: PlaceOrder, vault: payment.CardVault
) -> PlacedOrder:
    errors = _check_shape(command)
    try:
        card_number = payment.normalize_card_number(command.card_number)
    except InvalidInput as exc:
        errors.extend(exc.errors)
        card_number = ""
    # the look-ups before the provider call hold no transaction (none is open across it)
    async with lookup(session) as reader:
        pizzas = await menu.find_pizzas(reader, (line.pizza_id for line in command.lines))
        for i, line in enumerate(command.lines):
            if line.pizza_id not in pizzas:
                errors.append(
                    FieldError(f"items[{i}].pizza_id", N_("This pizza is not on the menu."))
                )
    if errors:
        raise InvalidInput(errors + await _coupon_problems(session, command))
    fingerprint = request_fingerprint(command, card_number)
    # A retried request is told apart by the order insert's conflict on its key (below),
    # not by a look-up before it: one statement less for every order, one card token more
    # (never charged) for the rare retry. A retry the provider cannot serve is answered
    # from the order its first request made, if there is one.
    try:
        card = await payment.tokenize_card(vault, card_number)
    except Unavailable:
        async with read_only(session) as reader:
            if replayed := await _replay(reader, command, fingerprint):
                return replayed
        raise

    try:
        return await _write(session, settings, _Checked(command, fingerprint, pizzas, card))
    except IntegrityError as exc:
        if violated_constraint(exc) != _SAME_KEY:
            raise
    # Same Idempotency-Key as an earlier request (even one at the same time: the key's
    # check waited for its commit): its order, never a second one.
    await session.rollback()
    if replayed := await _replay(session, command, fingerprint):
        return replayed
    raise NotFound(N_("order not found"))


@dataclass(frozen=True, slots=True)
class _Checked:
    """A placement that passed its checks: what ``_write`` saves."""

    command: PlaceOrder
    #: what the order keeps to tell a retried request from a reused key
    fingerprint: str
    pizzas: Mapping[int, menu.MenuItem]
    card: payment.PaymentMethod

    def items(self) -> list[OrderItem]:
        """The lines, named and priced by the menu."""
        return [
            OrderItem(
                pizza_id=line.pizza_id,
                name=self.pizzas[line.pizza_id].name,
                qty=line.qty,
                unit_price=self.pizzas[line.pizza_id].price,
            )
            for line in self.command.lines
        ]


async def _write(session: AsyncSession, settings: Settings, checked: _Checked) -> PlacedOrder:
    """Order, lines, coupon, payment, event and view, committed together."""
    command, items = checked.command, checked.items()
    order_id, now = uuid.uuid4(), utcnow()
    subtotal = sum(item.unit_price * item.qty for item in items)
    currency = settings.shop.currency
    coupon_code = coupon.normalize_code(command.coupon_code) if command.coupon_code else None
    address, phone, note = (
        command.address.strip(),
        command.phone.strip() or None,
        command.note.strip() or None,
    )
    order = {
        "id": order_id,
        "customer_id": command.customer_id,
        "status": OrderStatus.placed,
        "total_amount": subtotal,
        "coupon_code": coupon_code,
        "currency": currency,
        "address": address,
        "phone": phone,
        "note": note,
        "idempotency_key": command.idempotency_key,
        "request_fingerprint": checked.fingerprint if command.idempotency_key else None,
        "discount_amount": 0,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    _NEW_ORDER.add(session, [order])
    discount = 0
    if coupon_code:
        granted = await coupon.redeem(session, coupon_code, command.customer_id, order_id)
        discount = min(subtotal, granted)
        await session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(total_amount=subtotal - discount, discount_amount=discount)
        )
    total = subtotal - discount
    _NEW_LINES.add(
        session,
        [
            {
                "order_id": order_id,
                "position": position,
                "pizza_id": item.pizza_id,
                "name": item.name,
                "qty": item.qty,
                "unit_price": item.unit_price,
            }
            for position, item in enumerate(items)
        ],
    )
    payment.open_payment(
        session, order_id=order_id, amount=total, currency=currency, card=checked.card
    )
    record_event(
        session,
        OrderPlaced(
            order_id=order_id,
            customer_id=command.customer_id,
            items=items,
            total_amount=total,
            discount_amount=discount,
            coupon_code=coupon_code,
            currency=currency,
            address=address,
            phone=phone,
            note=note,
            customer_name=command.customer_name
            or await accounts.display_name(session, command.customer_id),
            version=1,
        ),
        aggregate_id=order_id,
        correlation_id=order_id,
    )
    await complete(session)  # projected at once: the order page can show it next
    logs.bind(correlation_id=str(order_id))  # the rest of this request logs the order too
    log.info("order placed: %s", order_id)
    return PlacedOrder(order_id, replayed=False)


#: orders are changed on the driver (``AggregateRows``): the capture pays one with every
#: order; every change of an order's state goes this way, so none meets an ORM copy
ORDERS = AggregateRows(Order)
_LOCKED = Statement(ORDERS.select().where(Order.id == bindparam("order_id")).with_for_update())


async def _locked(session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    row = await _LOCKED.fetchrow(session, {"order_id": order_id})
    return None if row is None else ORDERS.loaded(row)


#: the order, locked, with its lines as the kitchen gets them (a JSON array built by
#: PostgreSQL): one round trip, not the order and then its lines. Built once.
_LINES = cast(Table, OrderLine.__table__)
_ITEMS = (
    select(
        func.json_agg(
            aggregate_order_by(
                func.json_build_object(
                    "pizzaId",
                    _LINES.c.pizza_id,
                    "name",
                    _LINES.c.name,
                    "qty",
                    _LINES.c.qty,
                    "unitPrice",
                    _LINES.c.unit_price,
                ),
                _LINES.c.position,
            )
        )
    )
    .where(_LINES.c.order_id == Order.id)
    .scalar_subquery()
)
_WITH_ITEMS = Statement(
    ORDERS.select()
    .add_columns(_ITEMS.label("items"))
    .where(Order.id == bindparam("order_id"))
    .with_for_update(of=ORDERS.table)
)


async def on_payment_captured(session: AsyncSession, event: Event) -> None:
    """The card was charged: the order is paid, and the kitchen may start (``OrderPaid``)."""
    row = await _WITH_ITEMS.fetchrow(session, {"order_id": event.as_(PaymentCaptured).order_id})
    order = None if row is None else ORDERS.loaded(row)
    if row is None or order is None or order.status != OrderStatus.placed:
        return  # cancelled meanwhile: the payment worker voids the charge
    order.move_to(OrderStatus.paid)
    items = msgspec.convert(row["items"] or [], list[OrderItem])
    order.emit(OrderPaid, items=items, address=order.address)
    await ORDERS.record(session, order, event)


async def on_payment_failed(session: AsyncSession, event: Event) -> None:
    failed = event.as_(PaymentFailed)
    order = await _locked(session, failed.order_id)
    if order is None or order.status != OrderStatus.placed:
        return
    order.move_to(OrderStatus.payment_failed)
    await coupon.release_for_order(session, order.id)  # the customer may try again with it
    order.emit(OrderPaymentFailed, reason=failed.failure_reason)
    await ORDERS.record(session, order, event)


async def on_delivery_delivered(session: AsyncSession, event: Event) -> None:
    order = await _locked(session, event.as_(DeliveryDelivered).order_id)
    if order is None or order.status != OrderStatus.paid:
        return
    order.move_to(OrderStatus.fulfilled)
    order.emit(OrderFulfilled)
    await ORDERS.record(session, order, event)


def cancel_refusal(order_status: str, delivery_status: str | None) -> str | None:
    """Why this order can no longer be cancelled, or None when it can (FR4)."""
    if order_status not in (OrderStatus.placed, OrderStatus.paid):
        return N_(
            "This order is %(status)s and can no longer be cancelled.",
            status=status_label(order_status),
        )
    if delivery_status not in (None, "queued", "cancelled"):
        return delivery.kitchen_started_reason(delivery_status)
    return None


async def cancel_order(session: AsyncSession, order_id: uuid.UUID, customer_id: uuid.UUID) -> None:
    """Cancel the order and its kitchen ticket in ONE transaction; the payment is voided
    by the payment worker reacting to ``OrderCancelled`` (FR4, FR5).

    The payment is locked before the order, as the capture does (it pays the order in
    its own transaction, ``app.subscriptions.IN_TRANSACTION``): the other way round, a
    cancel and a capture at the same moment could deadlock. A refusal rolls it back."""
    await payment.request_cancel(session, order_id)
    order = await _locked(session, order_id)
    if order is None or order.customer_id != customer_id:
        raise NotFound(N_("order not found"))
    if reason := cancel_refusal(order.status, None):
        raise Conflict(reason)
    await delivery.cancel_for_order(session, order.id, order.customer_id)  # 409 once cooking
    await coupon.release_for_order(session, order.id)
    order.move_to(OrderStatus.cancelled)
    order.emit(OrderCancelled)
    await ORDERS.record(session, order)
    await complete(session)


@dataclass(frozen=True)
class OrderFacts:
    """What another context may know about an order."""

    id: uuid.UUID
    customer_id: uuid.UUID
    status: str
    total_amount: int
    currency: str


async def order_facts(
    session: AsyncSession, order_id: uuid.UUID, customer_id: uuid.UUID
) -> OrderFacts:
    """The customer's own order (404 for anyone else's)."""
    order = await session.get(Order, order_id)
    if order is None or order.customer_id != customer_id:
        raise NotFound(N_("order not found"))
    return OrderFacts(order.id, order.customer_id, order.status, order.total_amount, order.currency)


async def on_payment_refunded(session: AsyncSession, event: Event) -> None:
    order = await _locked(session, event.as_(PaymentRefunded).order_id)
    if order is None or order.status != OrderStatus.fulfilled:
        return
    order.move_to(OrderStatus.refunded)
    order.emit(OrderRefunded)
    await ORDERS.record(session, order, event)


async def placed_before(
    session: AsyncSession, cutoff: datetime, limit: int = 200
) -> list[tuple[uuid.UUID, datetime]]:
    """Orders still waiting for their payment's outcome that were placed before
    ``cutoff``, oldest first: the charge is not getting through (the watchdog)."""
    rows = await session.execute(
        select(Order.id, Order.created_at)
        .where(Order.status == OrderStatus.placed, Order.created_at < cutoff)
        .order_by(Order.created_at)
        .limit(limit)
    )
    return [(order_id, created) for order_id, created in rows]


async def order_for_key(
    session: AsyncSession, customer_id: uuid.UUID, idempotency_key: str
) -> uuid.UUID | None:
    """The order a checkout form (its one-time key) already placed, if any: a second
    submit of the same form lands on that order instead of an empty basket's error."""
    return await session.scalar(
        select(Order.id).where(
            Order.customer_id == customer_id, Order.idempotency_key == idempotency_key
        )
    )


@dataclass(frozen=True)
class CheckoutAgain:
    """What a failed payment's order gives back to the checkout: basket and details, or
    the order these pizzas were already ordered again as."""

    lines: list[LineRequest]
    address: str
    phone: str
    note: str
    coupon_code: str
    ordered_again_as: uuid.UUID | None = None


_RETRY = "again-"


def retry_key(order_id: uuid.UUID) -> str:
    """The checkout key of "Try another card" on ``order_id``: one per failed order, so a
    second try from the same failed order (another tab, the Back button, a later visit)
    finds the order the first try placed instead of charging for the pizzas twice."""
    return f"{_RETRY}{order_id}"


def is_retry_key(key: str) -> bool:
    return key.startswith(_RETRY)


async def checkout_again(
    session: AsyncSession, order_id: uuid.UUID, customer_id: uuid.UUID
) -> CheckoutAgain:
    """The basket and details of the customer's order whose payment failed ("Try another
    card"); 409 for any other order, which has a payment that went through or was stopped."""
    order = await session.get(Order, order_id)
    if order is None or order.customer_id != customer_id:
        raise NotFound(N_("order not found"))
    if order.status != OrderStatus.payment_failed:
        raise Conflict(N_("Only an order whose payment failed can be paid with another card."))
    lines = await session.scalars(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.position)
    )
    return CheckoutAgain(
        lines=[LineRequest(line.pizza_id, line.qty) for line in lines],
        address=order.address,
        phone=order.phone or "",
        note=order.note or "",
        coupon_code=order.coupon_code or "",
        ordered_again_as=await order_for_key(session, customer_id, retry_key(order.id)),
    )


async def paid_before(
    session: AsyncSession, cutoff: datetime, limit: int = 200
) -> list[tuple[uuid.UUID, datetime]]:
    """Orders still ``paid`` (not yet delivered) that were placed before ``cutoff``, oldest
    first: the watchdog asks delivery which of them have no delivery at all."""
    rows = await session.execute(
        select(Order.id, Order.created_at)
        .where(Order.status == OrderStatus.paid, Order.created_at < cutoff)
        .order_by(Order.created_at)
        .limit(limit)
    )
    return [(order_id, created) for order_id, created in rows]
