"""The aggregate base: a move goes through the machine or not at all, every change counts
once, and the events a use case collects are handed out exactly once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Enum
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.orm import InstrumentedAttribute

from app.coupon.events import CouponRevoked
from app.coupon.models import Coupon, CouponStatus
from app.delivery.events import DeliveryAdvanced
from app.delivery.models import CourierStatus, Delivery, DeliveryStatus
from app.ordering.events import OrderCancelled, OrderPaid, OrderPaymentFailed
from app.ordering.models import Order, OrderStatus
from app.payment.events import PaymentCaptured
from app.payment.models import Payment, PaymentStatus
from app.platform.aggregate import Aggregate
from app.platform.errors import IllegalTransition
from app.refund.events import RefundCancelled
from app.refund.models import Refund, RefundStatus

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def _order(status: OrderStatus = OrderStatus.placed) -> Order:
    return Order(
        id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        status=status,
        total_amount=1800,
        currency="EUR",
        address="Main Street 1",
        version=1,
        updated_at=LONG_AGO,
    )


def test_an_illegal_move_raises_409_and_changes_nothing() -> None:
    order = _order(OrderStatus.placed)
    with pytest.raises(IllegalTransition) as raised:
        order.move_to(OrderStatus.refunded)
    assert raised.value.status_code == 409
    assert "placed" in raised.value.detail and "refunded" in raised.value.detail
    assert (order.status, order.version, order.updated_at) == ("placed", 1, LONG_AGO)
    assert order.pending_events == []


def test_a_legal_move_counts_once_and_returns_the_status_it_left() -> None:
    order = _order(OrderStatus.placed)
    left = order.move_to(OrderStatus.paid)
    assert left is OrderStatus.placed
    assert (order.status, order.version) == ("paid", 2)
    assert datetime.now(UTC) - order.updated_at < timedelta(minutes=1)
    order.move_to(OrderStatus.fulfilled)
    assert order.version == 3


def test_a_change_that_is_not_a_move_counts_too() -> None:
    delivery = Delivery(
        id=uuid.uuid4(),
        status=DeliveryStatus.queued,
        courier_status=CourierStatus.unassigned,
        version=4,
        updated_at=LONG_AGO,
    )
    delivery.courier_to(CourierStatus.requested)
    assert (delivery.status, delivery.courier_status) == ("queued", "requested")
    assert delivery.version == 5
    assert delivery.updated_at > LONG_AGO
    with pytest.raises(IllegalTransition):
        delivery.courier_to(CourierStatus.unassigned)
    assert delivery.version == 5


def test_events_are_snapshots_taken_when_emitted_and_handed_out_once() -> None:
    order = _order(OrderStatus.placed)
    order.move_to(OrderStatus.payment_failed)
    order.emit(OrderPaymentFailed, reason="declined")
    assert order.pending_events[0].version == 2

    events = order.take_events()
    assert [type(e) for e in events] == [OrderPaymentFailed]
    failed = events[0]
    assert isinstance(failed, OrderPaymentFailed)
    assert (failed.order_id, failed.status) == (order.id, "payment_failed")
    assert failed.reason == "declined"
    assert order.take_events() == []
    assert order.pending_events == []


def test_several_events_keep_their_order_and_their_own_versions() -> None:
    order = _order(OrderStatus.placed)
    order.move_to(OrderStatus.paid)
    order.emit(OrderPaid, items=[], address=order.address)
    order.move_to(OrderStatus.cancelled)
    order.emit(OrderCancelled)
    assert [(type(e), e.version, e.status) for e in order.take_events()] == [
        (OrderPaid, 2, "paid"),
        (OrderCancelled, 3, "cancelled"),
    ]


def test_pending_events_belong_to_their_own_aggregate() -> None:
    first, second = _order(), _order()
    first.emit(OrderCancelled)
    assert second.pending_events == []
    assert len(first.pending_events) == 1


def _each_aggregate() -> list[tuple[Aggregate[Any, Any], Any, type[Any], dict[str, Any]]]:
    order_id, customer_id = uuid.uuid4(), uuid.uuid4()
    return [
        (_order(), OrderStatus.paid, OrderPaid, {"items": [], "address": "x"}),
        (
            Payment(
                id=uuid.uuid4(),
                order_id=order_id,
                amount=1800,
                currency="EUR",
                status=PaymentStatus.pending,
                version=1,
            ),
            PaymentStatus.captured,
            PaymentCaptured,
            {},
        ),
        (
            Delivery(
                id=uuid.uuid4(),
                order_id=order_id,
                customer_id=customer_id,
                status=DeliveryStatus.queued,
                courier_status=CourierStatus.unassigned,
                address="x",
                items=[],
                history=[],
                return_trip=0,
                version=1,
            ),
            DeliveryStatus.preparing,
            DeliveryAdvanced,
            {},
        ),
        (
            Refund(
                id=uuid.uuid4(),
                order_id=order_id,
                customer_id=customer_id,
                status=RefundStatus.requested,
                reason_code="cold",
                reason="",
                amount=1800,
                currency="EUR",
                created_at=LONG_AGO,
                version=1,
            ),
            RefundStatus.cancelled,
            RefundCancelled,
            {"reason_label": "Cold"},
        ),
        (
            Coupon(
                id=uuid.uuid4(),
                code="PIZZA-ABCD-EFGH",
                order_id=order_id,
                customer_id=customer_id,
                status=CouponStatus.issued,
                discount=200,
                currency="EUR",
                version=1,
            ),
            CouponStatus.revoked,
            CouponRevoked,
            {},
        ),
    ]


@pytest.mark.parametrize(
    ("aggregate", "target", "event", "extra"),
    _each_aggregate(),
    ids=["order", "payment", "delivery", "refund", "coupon"],
)
def test_every_aggregate_moves_counts_and_tells_through_the_base(
    aggregate: Aggregate[Any, Any], target: Any, event: type[Any], extra: dict[str, Any]
) -> None:
    assert isinstance(aggregate, Aggregate)
    aggregate.move_to(target)
    aggregate.emit(event, **extra)
    [told] = aggregate.take_events()
    assert isinstance(told, event)
    assert (told.status, told.version) == (target.value, 2)
    # every event of a customer's order is grouped under that order
    order_id = aggregate.id if isinstance(aggregate, Order) else told.order_id
    assert aggregate.correlation_id == order_id
    with pytest.raises(IllegalTransition):
        aggregate.move_to(target)  # no machine allows a move to where it already is
    assert aggregate.version == 2


@pytest.mark.parametrize(
    ("column", "enum"),
    [
        (Order.status, OrderStatus),
        (Payment.status, PaymentStatus),
        (Delivery.status, DeliveryStatus),
        (Delivery.courier_status, CourierStatus),
        (Refund.status, RefundStatus),
        (Coupon.status, CouponStatus),
    ],
    ids=["order", "payment", "delivery", "courier", "refund", "coupon"],
)
def test_a_status_column_stores_its_enum_by_value_and_refuses_strangers(
    column: InstrumentedAttribute[Any], enum: type[Any]
) -> None:
    """The column is the VARCHAR(20) the migrations made (no PostgreSQL enum, no CHECK of
    SQLAlchemy's: the migration's own CHECK stays the database's guard); what goes in is
    the member's value, what comes out is the member, and a string the enum does not know
    is refused while the statement is built, before the database sees it."""
    type_ = column.type
    assert isinstance(type_, Enum)
    assert (type_.enum_class, type_.length, type_.native_enum, type_.create_constraint) == (
        enum,
        20,
        False,
        False,
    )
    dialect = PGDialect_asyncpg()
    bind, load = type_.bind_processor(dialect), type_.result_processor(dialect, None)
    assert bind is not None and load is not None
    for member in enum:
        assert bind(member) == bind(member.value) == member.value
        assert load(member.value) is member
    with pytest.raises(LookupError):
        bind("lost")
