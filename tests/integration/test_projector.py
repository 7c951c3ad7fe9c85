"""The projector: idempotent, order-insensitive, and the timeline tells every stage."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.db import utcnow
from app.platform.events import Event
from app.status import projector
from app.status import service as status
from app.status.eta import STAGES
from app.status.models import BoardCard, OrderView

Factory = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _event(kind: str, payload: dict[str, Any], at: datetime) -> Event:
    return Event(
        id=uuid.uuid4(),
        type=kind,
        aggregate_type="test",
        aggregate_id=payload.get("deliveryId", payload["orderId"]),
        correlation_id=payload["orderId"],
        causation_id=None,
        occurred_at=at,
        payload=payload,
    )


def _delivery(order_id: str, customer: str, version: int, stages: list[str]) -> dict[str, Any]:
    return {
        "deliveryId": str(uuid.uuid5(uuid.NAMESPACE_URL, order_id)),
        "orderId": order_id,
        "customerId": customer,
        "status": stages[-1],
        "courierStatus": "assigned",
        "rider": "Giulia R.",
        "items": [],
        "address": "Via Roma 1",
        "paidAt": T0.isoformat(),
        "version": version,
        "history": [
            {"status": s, "at": (T0 + timedelta(minutes=i)).isoformat()}
            for i, s in enumerate(stages)
        ],
    }


async def _apply(session_factory: Factory, event: Event) -> list[str]:
    async with session_factory() as session, session.begin():
        channels = await projector.apply(session, event)
        await projector.save_views(session)
        return channels


async def _placed(session_factory: Factory, at: datetime) -> tuple[str, str]:
    """A fresh order's view, projected from its ``OrderPlaced``: (order id, customer id)."""
    order_id, customer = str(uuid.uuid4()), str(uuid.uuid4())
    placed = {
        "orderId": order_id,
        "customerId": customer,
        "items": [],
        "totalAmount": 950,
        "currency": "EUR",
        "address": "Via Roma 1",
        "version": 1,
    }
    await _apply(session_factory, _event("OrderPlaced", placed, at))
    return order_id, customer


async def test_a_skipped_stage_event_still_shows_on_the_timeline(session_factory: Factory) -> None:
    order_id, customer = await _placed(session_factory, T0 - timedelta(minutes=1))
    newest = _delivery(order_id, customer, 4, ["queued", "preparing", "baking"])
    assert await _apply(
        session_factory, _event("DeliveryAdvanced", newest, T0 + timedelta(minutes=2))
    )
    # the board is told of every snapshot (it re-reads and finds nothing new): asking
    # the card's upsert whether it wrote would be a round trip of its own; the order's
    # pages are told only of a change of its view
    older = _delivery(order_id, customer, 3, ["queued", "preparing"])
    assert await _apply(
        session_factory, _event("DeliveryAdvanced", older, T0 + timedelta(minutes=1))
    ) == [projector.BOARD_CHANNEL]
    again = await _apply(
        session_factory, _event("DeliveryAdvanced", newest, T0 + timedelta(minutes=2))
    )
    assert again == [projector.BOARD_CHANNEL], "a repeated event changes nothing"

    async with session_factory() as session:
        view = await session.get(OrderView, uuid.UUID(order_id))
        card = await session.get(BoardCard, uuid.UUID(newest["deliveryId"]))
    assert card is not None
    assert (card.version, card.status) == (4, "baking"), "the newer card stays"
    assert view is not None
    assert [e["status"] for e in view.doc["timeline"]] == [
        "placed",
        "queued",
        "preparing",
        "baking",
    ]
    assert view.doc["delivery"]["status"] == "baking"
    assert view.version == 2


async def test_a_view_changed_but_not_saved_cannot_be_committed(session_factory: Factory) -> None:
    """``apply`` changes the view in memory and ``save_views`` writes it: a commit in
    between is refused, so a forgotten save cannot lose a customer's page update."""
    import pytest

    order_id, customer = await _placed(session_factory, T0 - timedelta(minutes=1))
    queued = _delivery(order_id, customer, 1, ["queued"])
    async with session_factory() as session:
        await session.begin()
        assert await projector.apply(session, _event("DeliveryCreated", queued, T0))
        with pytest.raises(RuntimeError, match="save_views"):
            await session.commit()
        await session.rollback()

    async with session_factory() as session:
        view = await session.get(OrderView, uuid.UUID(order_id))
    assert view is not None and view.version == 1, "nothing of the refused commit stayed"


async def test_an_event_for_an_unknown_order_waits_for_its_view(session_factory: Factory) -> None:
    import pytest

    order_id = str(uuid.uuid4())
    early = _delivery(order_id, str(uuid.uuid4()), 1, ["queued"])
    with pytest.raises(projector.ViewNotReady):
        await _apply(session_factory, _event("DeliveryCreated", early, T0))


def _refund(order_id: str, customer: str, refund_id: str, status: str, version: int) -> Event:
    created = {"a": T0, "b": T0 + timedelta(hours=1)}[refund_id[0]]
    payload = {
        "refundId": refund_id,
        "orderId": order_id,
        "customerId": customer,
        "status": status,
        "reasonCode": "other",
        "reasonLabel": "Other",
        "reason": refund_id,
        "amount": 950,
        "currency": "EUR",
        "cancelledBy": "customer" if status == "cancelled" else None,
        "createdAt": created.isoformat(),
        "version": version,
    }
    kind = {"requested": "RefundRequested", "cancelled": "RefundCancelled"}[status]
    return Event(
        id=uuid.uuid4(),
        type=kind,
        aggregate_type="refund",
        aggregate_id=refund_id,
        correlation_id=order_id,
        causation_id=None,
        occurred_at=created + timedelta(minutes=version),
        payload=payload,
    )


async def test_a_second_refund_shows_on_the_order_view(session_factory: Factory) -> None:
    """Versions are per refund: refund B's first event (version 1) is news even though
    refund A already reached version 2, and A's stragglers never hide B."""
    order_id, customer = str(uuid.uuid4()), str(uuid.uuid4())
    placed = {
        "orderId": order_id,
        "customerId": customer,
        "items": [],
        "totalAmount": 950,
        "currency": "EUR",
        "address": "Via Roma 1",
        "version": 1,
    }
    await _apply(session_factory, _event("OrderPlaced", placed, T0 - timedelta(hours=1)))
    first, second = "a" + str(uuid.uuid4())[1:], "b" + str(uuid.uuid4())[1:]
    await _apply(session_factory, _refund(order_id, customer, first, "requested", 1))
    await _apply(session_factory, _refund(order_id, customer, first, "cancelled", 2))
    assert await _apply(session_factory, _refund(order_id, customer, second, "requested", 1))
    # A straggler of the withdrawn refund arrives again: it must not take the view back.
    await _apply(session_factory, _refund(order_id, customer, first, "cancelled", 2))

    async with session_factory() as session:
        view = await session.get(OrderView, uuid.UUID(order_id))
    assert view is not None
    assert view.doc["refund"]["id"] == second and view.doc["refund"]["status"] == "requested"
    steps = [e["status"] for e in view.doc["timeline"]]
    assert steps == ["placed", "refund_requested", "refund_cancelled", "refund_requested"]


async def test_a_late_event_of_an_older_refund_does_not_hide_the_newer_one(
    session_factory: Factory,
) -> None:
    order_id, customer = str(uuid.uuid4()), str(uuid.uuid4())
    placed = {
        "orderId": order_id,
        "customerId": customer,
        "items": [],
        "totalAmount": 950,
        "currency": "EUR",
        "address": "Via Roma 1",
        "version": 1,
    }
    await _apply(session_factory, _event("OrderPlaced", placed, T0 - timedelta(hours=1)))
    first, second = "a" + str(uuid.uuid4())[1:], "b" + str(uuid.uuid4())[1:]
    await _apply(session_factory, _refund(order_id, customer, first, "requested", 1))
    await _apply(session_factory, _refund(order_id, customer, second, "requested", 1))
    await _apply(session_factory, _refund(order_id, customer, first, "cancelled", 2))

    async with session_factory() as session:
        view = await session.get(OrderView, uuid.UUID(order_id))
    assert view is not None
    assert view.doc["refund"]["id"] == second and view.doc["refund"]["status"] == "requested"


async def test_the_delivery_window_learns_from_the_read_side_s_own_cards(
    session_factory: Factory,
) -> None:
    """The stage statistics come from the board cards' stage history (newest deliveries
    first), so the read side asks the delivery context nothing."""
    now = utcnow()
    for n in range(5):
        order_id, customer = await _placed(session_factory, T0)
        # every stage took one minute (see _delivery), the newest delivery last
        delivered = _delivery(order_id, customer, 7, [*STAGES, "delivered"])
        delivered["deliveredAt"] = (now + timedelta(seconds=n)).isoformat()
        assert await _apply(session_factory, _event("DeliveryDelivered", delivered, now))
    async with session_factory() as session:
        durations = await status.recent_stage_durations(session, limit=5)
    assert durations == {stage: [60.0] * 5 for stage in STAGES}


async def test_the_riders_first_estimate_is_kept_when_given_in_the_kitchen_only(
    session_factory: Factory,
) -> None:
    """The promise moves to a rider's first estimate given while the pizzas are in the
    kitchen (``app.status.eta``): the view keeps that first one through later news."""
    eta = T0 + timedelta(minutes=20)

    async def first_estimate(stages_with_eta: list[tuple[list[str], datetime]]) -> Any:
        order_id, customer = await _placed(session_factory, T0 - timedelta(minutes=1))
        for version, (stages, partner_eta) in enumerate(stages_with_eta, start=2):
            payload = {**_delivery(order_id, customer, version, stages)}
            payload["partnerEta"] = partner_eta.isoformat()
            await _apply(session_factory, _event("DeliveryAdvanced", payload, T0))
        async with session_factory() as session:
            view = await session.get(OrderView, uuid.UUID(order_id))
        assert view is not None
        shown = view.doc["delivery"]
        return shown["firstPartnerEta"], shown["firstPartnerEtaAt"]

    later = eta + timedelta(minutes=7)
    kept = await first_estimate([(["queued"], eta), (["queued", "preparing", "baking"], later)])
    assert kept == (eta.isoformat(), T0.isoformat())  # the estimate, and when it was given
    ready = await first_estimate([(["queued", "preparing", "baking", "ready"], eta)])
    assert ready == (None, None)


async def test_the_promise_made_at_payment_is_kept_on_the_view_and_its_card(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    """Computed again on every render from the statistics of the moment, the promise moved
    with every delivery, and waiting orders turned late with nothing happening to them."""
    from app.delivery import service as delivery
    from app.ordering import service as ordering
    from app.payment import tasks as payment_tasks
    from app.platform.handlers import handle_once
    from app.status.eta import Spread, estimate
    from app.status.models import BoardCard
    from tests.support.inproc import events_of, place

    order_id = await place(session_factory, customer_id=uuid.uuid4())
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed.to_event().to_job_arg()) == "captured"
    [captured] = await events_of(session_factory, order_id, "PaymentCaptured")
    await handle_once(session_factory, "t.paid", captured.to_event(), ordering.on_payment_captured)
    [paid] = await events_of(session_factory, order_id, "OrderPaid")
    await handle_once(session_factory, "t.create", paid.to_event(), delivery.create_for_paid_order)

    async with session_factory() as session:
        view = await session.get(OrderView, order_id)
        assert view is not None
        card = await session.scalar(select(BoardCard).where(BoardCard.order_id == order_id))
    assert card is not None and card.promised_by is not None
    kept = datetime.fromisoformat(view.doc["promisedBy"])
    assert kept == card.promised_by and kept > paid.occurred_at
    # the kitchen got much faster since: the promise made at payment stays what it was
    instant = {stage: Spread(low=1.0, mid=1.0, high=1.0) for stage in STAGES}
    window = estimate(view.doc, instant, paid.occurred_at + timedelta(seconds=30))
    assert window is not None and window.promised == kept and not window.late
