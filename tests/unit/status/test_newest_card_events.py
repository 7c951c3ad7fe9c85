"""Which events of one transaction write a board card: each delivery's newest snapshot."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from app.platform.events import Event
from app.status.projector import newest_card_events


def _event(kind: str, aggregate: str, version: int, aggregate_type: str = "delivery") -> Event:
    payload: dict[str, Any] = {"version": version}
    return Event(
        id=uuid.uuid4(),
        type=kind,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate,
        correlation_id="order-1",
        causation_id=None,
        occurred_at=datetime.now(UTC),
        payload=payload,
    )


def test_the_newest_snapshot_of_each_delivery_writes_its_card() -> None:
    created = _event("DeliveryCreated", "d1", 1)
    requested = _event("CourierRequested", "d1", 2)
    other = _event("DeliveryCreated", "d2", 1)
    assert newest_card_events([created, requested, other]) == {requested.id, other.id}


def test_events_that_are_not_a_delivery_snapshot_write_no_card() -> None:
    paid = _event("OrderPaid", "o1", 3, aggregate_type="order")
    captured = _event("PaymentCaptured", "p1", 2, aggregate_type="payment")
    assert newest_card_events([paid, captured]) == set()


def test_an_older_snapshot_recorded_later_does_not_replace_the_newer() -> None:
    newer = _event("CourierRequested", "d1", 2)
    older = _event("DeliveryCreated", "d1", 1)
    assert newest_card_events([newer, older]) == {newer.id}
