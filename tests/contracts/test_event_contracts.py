"""The events between contexts: wired, emitted, and compatible with the committed schemas.

A consumer relies on an event's contract (``app/<context>/events.py``) and on what the
outbox already holds. These tests fail when an event nobody reacts to is not marked as
projection-only, when a wired event is never emitted by its context, when the projector
and the wiring disagree, and when a change would break a consumer of the committed
schema (``docs/events``).
"""

from __future__ import annotations

import ast
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.contracts import SCHEMAS
from app.delivery.events import DeliveryChanged, DeliveryReturned
from app.ordering.events import OrderPlaced
from app.platform.contracts import breaking_changes, file_name, render, schema_of
from app.platform.events import DomainEvent, Event, WrongEvent
from app.refund.events import RefundChanged
from app.status import projector
from app.subscriptions import EVENTS, SUBSCRIPTIONS, WIRING

ROOT = Path(__file__).resolve().parents[2]

#: the names outbox rows were written with before the contracts existed: rows already in
#: a database must still route
WIRE_NAMES = {
    "OrderPlaced", "PaymentCaptured", "PaymentFailed", "PaymentVoided", "OrderPaid",
    "OrderPaymentFailed", "OrderCancelled", "OrderFulfilled", "DeliveryCreated",
    "CourierRequested", "CourierAssigned", "DeliveryAdvanced", "DeliveryMoveUndone",
    "DeliveryDelivered", "DeliveryCancelled", "CouponIssued", "CouponRedeemed",
    "CouponReinstated", "CouponRevoked", "CouponFlagged", "RefundRequested",
    "DeliveryReturnRequested", "DeliveryReturned", "PaymentRefunded", "RefundCompleted",
    "OrderRefunded", "RefundCancelled", "DeliveryReturnCancelled",
}  # fmt: skip


def _names_used_by_emitter(event: type[DomainEvent]) -> set[str]:
    """Every name the event's own context mentions outside its contract module."""
    folder = ROOT / Path(*event.__module__.split(".")[:-1])
    names: set[str] = set()
    for path in folder.glob("*.py"):
        if path.name == "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.TYPE)
def test_every_event_has_a_subscriber_or_is_projection_only(event: type[DomainEvent]) -> None:
    reactions = WIRING.get(event, ())
    if event.PROJECTION_ONLY:
        assert event in projector.PROJECTED, f"{event.TYPE} is projection-only but not projected"
        assert not reactions, f"{event.TYPE} is marked projection-only but {reactions} react"
    else:
        assert reactions, f"nobody reacts to {event.TYPE}: wire it or mark it projection-only"


@pytest.mark.parametrize("event", list(WIRING), ids=lambda e: e.TYPE)
def test_every_wired_event_is_emitted(event: type[DomainEvent]) -> None:
    assert event in EVENTS, f"{event.TYPE} is wired but no context lists it in EVENTS"
    assert not event.ABSTRACT
    assert event.__name__ in _names_used_by_emitter(event), (
        f"{event.TYPE} is subscribed to but its context never emits it"
    )


def test_no_event_is_sent_to_the_status_worker() -> None:
    """The unit of work that records an event projects it (``app.status.projector``): a
    status job would only fold it a second time, for a relay hop and a transaction."""
    routed = {e.TYPE for e, subs in WIRING.items() if any(s.queue == "status" for s in subs)}
    assert not routed, f"projected where recorded, and sent to the status worker too: {routed}"


def test_rows_already_in_the_outbox_still_route() -> None:
    assert set(SUBSCRIPTIONS) == WIRE_NAMES
    assert len({event.TYPE for event in EVENTS}) == len(EVENTS)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.TYPE)
def test_committed_schema_is_current_and_compatible(event: type[DomainEvent]) -> None:
    path = SCHEMAS / file_name(event)
    assert path.exists(), f"no committed schema for {event.TYPE}: run python -m app.contracts"
    committed = json.loads(path.read_text())
    problems = breaking_changes(committed, schema_of(event))
    assert not problems, f"{event.TYPE} breaks its consumers (bump VERSION): {problems}"
    assert path.read_text() == render(schema_of(event)), (
        f"{path.name} is stale: run python -m app.contracts"
    )


def test_a_breaking_change_is_caught() -> None:
    """The compatibility check itself: removing, retyping or newly requiring a field
    breaks; an optional field added does not."""
    base = schema_of(DeliveryReturned)

    removed = json.loads(json.dumps(base))
    del removed["$defs"]["DeliveryReturned"]["properties"]["rider"]
    retyped = json.loads(json.dumps(base))
    retyped["$defs"]["DeliveryReturned"]["properties"]["status"] = {"type": "integer"}
    required = json.loads(json.dumps(base))
    required["$defs"]["DeliveryReturned"]["required"].append("rider")
    added = json.loads(json.dumps(base))
    added["$defs"]["DeliveryReturned"]["properties"]["tip"] = {"type": "integer"}

    assert breaking_changes(base, removed) == ["DeliveryReturned.rider: removed"]
    assert breaking_changes(base, retyped) == ["DeliveryReturned.status: type changed"]
    assert breaking_changes(base, required) == [
        "DeliveryReturned.rider: newly required (old events lack it)"
    ]
    assert breaking_changes(base, added) == []


def _envelope(type_: str, payload: dict[str, object]) -> Event:
    return Event(
        id=uuid.uuid4(),
        type=type_,
        aggregate_type="x",
        aggregate_id="1",
        correlation_id="1",
        causation_id=None,
        occurred_at=datetime.now(UTC),
        payload=payload,
    )


def test_payloads_written_before_the_contracts_still_decode() -> None:
    """Rows written by the old code (ISO dates with +00:00, fields added later absent)."""
    order_id, customer_id = str(uuid.uuid4()), str(uuid.uuid4())
    placed = _envelope(
        "OrderPlaced",
        {
            "orderId": order_id,
            "customerId": customer_id,
            "items": [{"pizzaId": 1, "name": "Margherita", "qty": 2, "unitPrice": 9000}],
            "totalAmount": 18000,
            "currency": "KRW",
            "address": "1 Main St",
            "version": 1,
        },
    ).as_(OrderPlaced)
    assert placed.discount_amount == 0 and placed.customer_name is None
    assert placed.items[0].unit_price == 9000

    returned = _envelope(
        "DeliveryReturned",
        {
            "deliveryId": str(uuid.uuid4()),
            "orderId": order_id,
            "customerId": customer_id,
            "status": "returned",
            "courierStatus": "unassigned",
            "rider": None,
            "items": [],
            "address": "1 Main St",
            "paidAt": "2026-01-01T10:00:00.123456+00:00",
            "deliveredAt": None,
            "version": 7,
        },
    ).as_(DeliveryChanged)
    assert returned.paid_at == datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert returned.return_trip is None and returned.history is None

    with pytest.raises(WrongEvent):
        _envelope("OrderPlaced", {}).as_(RefundChanged)
