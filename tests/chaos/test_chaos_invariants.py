"""The invariant checker itself: it passes a consistent shop and catches each kind of
breakage (no services needed; it runs with the normal tests)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from app.subscriptions import SUBSCRIPTIONS
from tests.chaos.invariants import World, check_world

ORDER = str(uuid.uuid4())
PAYMENT = str(uuid.uuid4())
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _event(type_: str, aggregate: str, aggregate_id: str, version: int, **payload: Any) -> Any:
    return {
        "id": uuid.uuid4(),
        "seq": version,
        "type": type_,
        "aggregate_type": aggregate,
        "aggregate_id": aggregate_id,
        "correlation_id": ORDER,
        "causation_id": None,
        "occurred_at": NOW,
        "published_at": NOW,
        "payload": {"orderId": ORDER, "version": version, **payload},
    }


def declined_order() -> World:
    """One order whose card was declined, exactly as the shop leaves it."""
    events = [
        _event("OrderPlaced", "order", ORDER, 1),
        _event("PaymentFailed", "payment", PAYMENT, 2, status="failed"),
        _event("OrderPaymentFailed", "order", ORDER, 2, status="payment_failed"),
    ]
    inbox = {
        (subscriber.task, str(e["id"]))
        for e in events
        for subscriber in SUBSCRIPTIONS.get(e["type"], ())
    }
    return World(
        orders={
            ORDER: {"id": ORDER, "status": "payment_failed", "total_amount": 1000, "version": 2}
        },
        payments={
            ORDER: {
                "id": PAYMENT,
                "order_id": ORDER,
                "status": "failed",
                "amount": 1000,
                "provider_ref": "ch_1",
                "version": 2,
            }
        },
        deliveries={},
        refunds={},
        coupons={},
        events=events,
        inbox=inbox,
        order_views={
            ORDER: {
                "doc": {
                    "status": "payment_failed",
                    "totalAmount": 1000,
                    "payment": {"status": "failed"},
                }
            }
        },
        board_cards={},
        refund_views={},
        dead_letters=[],
        charges=[{"id": "ch_1", "reference": PAYMENT, "status": "declined", "operations": []}],
        pickups=[],
    )


def test_a_consistent_shop_breaks_no_rule() -> None:
    report = check_world(declined_order(), acknowledged={ORDER})
    assert report.violations == []
    assert report.orders_checked == 1


def _captured_twice(world: World) -> None:
    world.charges = [
        {"id": f"ch_{i}", "reference": PAYMENT, "status": "captured", "operations": ["capture"]}
        for i in (1, 2)
    ]


def _illegal_step(world: World) -> None:
    world.events.append(_event("OrderPaid", "order", ORDER, 3, status="paid"))


def _stale_view(world: World) -> None:
    world.order_views[ORDER]["doc"]["status"] = "placed"


def _unrecorded(world: World) -> None:
    world.inbox.pop()


def _parked(world: World) -> None:
    world.dead_letters = [{"id": 1, "event_id": uuid.uuid4(), "event": {"correlationId": ORDER}}]


def _unpublished(world: World) -> None:
    world.events[-1]["published_at"] = None


@pytest.mark.parametrize(
    ("breakage", "rule"),
    [
        (_captured_twice, "capture"),
        (_illegal_step, "state-machine"),
        (_stale_view, "read-model"),
        (_unrecorded, "inbox"),
        (_parked, "dead-letter"),
        (_unpublished, "converged"),
    ],
)
def test_each_breakage_is_reported_under_its_rule(breakage: Any, rule: str) -> None:
    world = copy.deepcopy(declined_order())
    breakage(world)
    assert rule in check_world(world, acknowledged={ORDER}).by_rule()


def test_an_acknowledged_order_that_is_missing_is_reported() -> None:
    lost = str(uuid.uuid4())
    report = check_world(declined_order(), acknowledged={ORDER, lost})
    assert [v.subject for v in report.by_rule()["acknowledged"]] == [f"order {lost}"]


def test_a_poison_message_must_be_parked() -> None:
    poison = str(uuid.uuid4())
    report = check_world(declined_order(), expected_dead_letters={poison})
    assert "dead-letter" in report.by_rule()


def test_a_dead_letter_is_reported_with_its_error_before_its_long_payload() -> None:
    world = copy.deepcopy(declined_order())
    world.dead_letters = [
        {
            "id": 1,
            "handler": "delivery.notify_ready",
            "event_id": uuid.uuid4(),
            "event_type": "DeliveryAdvanced",
            "event": {"correlationId": ORDER, "payload": {"items": ["x" * 50] * 20}},
            "error_type": "CourierRejected",
            "error": "cannot mark a cancelled pickup ready",
        }
    ]
    [letter] = check_world(world, acknowledged={ORDER}).by_rule()["dead-letter"]
    assert letter.detail.startswith("handler=delivery.notify_ready event_type=DeliveryAdvanced")
    assert letter.detail.endswith(
        "error_type=CourierRejected: cannot mark a cancelled pickup ready"
    )
