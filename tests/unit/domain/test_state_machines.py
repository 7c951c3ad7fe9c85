"""Order and payment state machines: every legal move allowed, every other one refused."""

from __future__ import annotations

import itertools
import uuid

import pytest

from app.ordering.models import ORDER_MACHINE, Order, OrderStatus
from app.payment.models import PAYMENT_MACHINE, Payment, PaymentStatus
from app.platform.errors import IllegalTransition
from app.platform.statemachine import StateMachine

ORDER_MOVES = {
    (OrderStatus.placed, OrderStatus.paid),
    (OrderStatus.placed, OrderStatus.payment_failed),
    (OrderStatus.placed, OrderStatus.cancelled),
    (OrderStatus.paid, OrderStatus.cancelled),
    (OrderStatus.paid, OrderStatus.fulfilled),
    (OrderStatus.fulfilled, OrderStatus.refunded),
}
PAYMENT_MOVES = {
    (PaymentStatus.pending, PaymentStatus.captured),
    (PaymentStatus.pending, PaymentStatus.failed),
    (PaymentStatus.captured, PaymentStatus.voided),
    (PaymentStatus.captured, PaymentStatus.refunded),
}


def _all_pairs(states: type[OrderStatus] | type[PaymentStatus]) -> list[tuple[str, str]]:
    return list(itertools.product(states, repeat=2))  # type: ignore[arg-type]


@pytest.mark.parametrize(("current", "target"), _all_pairs(OrderStatus))
def test_order_machine_allows_exactly_the_designed_moves(
    current: OrderStatus, target: OrderStatus
) -> None:
    machine: StateMachine[OrderStatus] = ORDER_MACHINE
    if (current, target) in ORDER_MOVES:
        assert machine.check(current, target) is target
    else:
        with pytest.raises(IllegalTransition) as raised:
            machine.check(current, target)
        assert raised.value.status_code == 409
        assert current.value in raised.value.detail


@pytest.mark.parametrize(("current", "target"), _all_pairs(PaymentStatus))
def test_payment_machine_allows_exactly_the_designed_moves(
    current: PaymentStatus, target: PaymentStatus
) -> None:
    if (current, target) in PAYMENT_MOVES:
        assert PAYMENT_MACHINE.check(current, target) is target
    else:
        with pytest.raises(IllegalTransition):
            PAYMENT_MACHINE.check(current, target)


def test_order_move_bumps_version_and_refuses_illegal_moves() -> None:
    order = Order(id=uuid.uuid4(), status=OrderStatus.placed.value, version=1)
    order.move_to(OrderStatus.paid)
    assert (order.status, order.version) == ("paid", 2)
    with pytest.raises(IllegalTransition):
        order.move_to(OrderStatus.payment_failed)
    assert (order.status, order.version) == ("paid", 2)


def test_payment_forgets_the_card_number_once_it_leaves_pending() -> None:
    payment = Payment(
        id=uuid.uuid4(),
        status=PaymentStatus.pending.value,
        version=1,
        card_number="4242424242424242",
    )
    payment.move_to(PaymentStatus.failed)
    assert payment.card_number is None
    with pytest.raises(IllegalTransition):
        payment.move_to(PaymentStatus.captured)
