"""Every state machine allows exactly its designed moves and refuses every other one."""

from __future__ import annotations

import itertools
import uuid
from enum import StrEnum
from typing import Any

import pytest

from app.coupon.models import COUPON_MACHINE, CouponStatus
from app.delivery.models import (
    COURIER_MACHINE,
    DELIVERY_MACHINE,
    CourierStatus,
    Delivery,
    DeliveryStatus,
)
from app.ordering.models import ORDER_MACHINE, Order, OrderStatus
from app.payment.models import PAYMENT_MACHINE, Payment, PaymentStatus
from app.platform.errors import IllegalTransition
from app.platform.statemachine import StateMachine
from app.refund.models import REFUND_MACHINE, RefundStatus

Os, P, D, C, K = OrderStatus, PaymentStatus, DeliveryStatus, CourierStatus, CouponStatus
R = RefundStatus

DESIGNED: dict[str, tuple[StateMachine[Any], type[StrEnum], set[tuple[Any, Any]]]] = {
    "order": (
        ORDER_MACHINE,
        OrderStatus,
        {
            (Os.placed, Os.paid),
            (Os.placed, Os.payment_failed),
            (Os.placed, Os.cancelled),
            (Os.paid, Os.cancelled),
            (Os.paid, Os.fulfilled),
            (Os.fulfilled, Os.refunded),
        },
    ),
    "payment": (
        PAYMENT_MACHINE,
        PaymentStatus,
        {
            (P.pending, P.captured),
            (P.pending, P.failed),
            (P.pending, P.voided),
            (P.captured, P.voided),
            (P.captured, P.refunded),
        },
    ),
    "delivery": (
        DELIVERY_MACHINE,
        DeliveryStatus,
        {
            (D.queued, D.preparing),
            (D.queued, D.cancelled),
            (D.preparing, D.baking),
            (D.preparing, D.queued),  # undo of "Start preparing"
            (D.baking, D.ready),
            (D.baking, D.preparing),  # undo of "Into the oven"
            (D.ready, D.out_for_delivery),
            (D.out_for_delivery, D.delivered),
            (D.delivered, D.return_requested),
            (D.return_requested, D.returned),
            (D.return_requested, D.delivered),
        },
    ),
    "courier": (
        COURIER_MACHINE,
        CourierStatus,
        {
            (C.unassigned, C.requested),
            (C.unassigned, C.withdrawn),
            (C.requested, C.assigned),
            (C.requested, C.withdrawn),
            (C.assigned, C.withdrawn),
        },
    ),
    "coupon": (
        COUPON_MACHINE,
        CouponStatus,
        {
            (K.issued, K.redeemed),
            (K.issued, K.revoked),
            (K.issued, K.expired),
            (K.redeemed, K.issued),
            (K.revoked, K.issued),
        },
    ),
    "refund": (
        REFUND_MACHINE,
        RefundStatus,
        {(R.requested, R.completed), (R.requested, R.cancelled)},
    ),
}

CASES = [
    pytest.param(name, current, target, id=f"{name}:{current.value}->{target.value}")
    for name, (_, states, _) in DESIGNED.items()
    for current, target in itertools.product(states, repeat=2)
]


@pytest.mark.parametrize(("name", "current", "target"), CASES)
def test_machine_allows_exactly_the_designed_moves(name: str, current: Any, target: Any) -> None:
    machine, _, allowed = DESIGNED[name]
    if (current, target) in allowed:
        assert machine.check(current, target) is target
    else:
        with pytest.raises(IllegalTransition) as raised:
            machine.check(current, target)
        assert raised.value.status_code == 409
        assert current.value in raised.value.detail


def test_order_move_bumps_version_and_refuses_illegal_moves() -> None:
    order = Order(id=uuid.uuid4(), status=OrderStatus.placed, version=1)
    order.move_to(OrderStatus.paid)
    assert (order.status, order.version) == ("paid", 2)
    with pytest.raises(IllegalTransition):
        order.move_to(OrderStatus.payment_failed)
    assert (order.status, order.version) == ("paid", 2)


def test_a_payment_holds_no_card_number_only_a_token() -> None:
    columns = set(Payment.__table__.columns.keys())
    assert "card_number" not in columns
    assert {"payment_method", "card_brand", "card_last4"} <= columns
    payment = Payment(id=uuid.uuid4(), status=PaymentStatus.pending, version=1)
    payment.move_to(PaymentStatus.failed)
    with pytest.raises(IllegalTransition):
        payment.move_to(PaymentStatus.captured)


def test_delivery_next_stage_follows_the_kitchen_and_stops_at_delivered() -> None:
    delivery = Delivery(id=uuid.uuid4(), status=DeliveryStatus.queued, version=1)
    seen = []
    while (following := delivery.next_stage) is not None:
        delivery.move_to(following)
        seen.append(delivery.status)
    assert seen == ["preparing", "baking", "ready", "out_for_delivery", "delivered"]
    assert delivery.version == 6
