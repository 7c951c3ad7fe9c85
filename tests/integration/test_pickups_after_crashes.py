"""Partner pickups after crashes (issue 9, found by the chaos suite): a delivery job that
died after the partner booked a rider and before we recorded the pickup must not leave
that rider booked when the refund is withdrawn or the order cancelled. The job's retry,
and the withdraw handlers, ask the partner by idempotency key before treating the pickup
as never made. Checked against the partner's own records (the sandbox over HTTP)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq import Retry
from redis.asyncio import Redis
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.delivery import service as deliveries
from app.delivery import tasks as delivery_tasks
from app.delivery.gateway import HttpCourierGateway
from app.delivery.models import Delivery, ReturnPickup
from app.ordering import service as ordering
from app.payment import tasks as payment_tasks
from app.payment.provider import HttpPaymentProvider
from app.platform import uow
from app.platform.handlers import event_of, handle_once
from app.platform.settings import get_settings
from app.refund import service as refunds
from app.status.models import BoardCard
from tests.support.inproc import delivered, events_of, place
from tests.support.pipeline import Pipeline, eventually
from tests.support.sent import SentStatements
from workers.context import courier_context, payment_context, worker_context

Factory = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def courier_ctx(ctx: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The delivery worker's ``ctx``: the real HTTP gateway to the sandbox partner."""
    settings = get_settings()
    async with HttpCourierGateway.from_settings(settings) as gateway:
        yield {**courier_context(ctx, gateway)}


async def _pickups(sandbox: httpx.AsyncClient, reference: str) -> list[dict[str, Any]]:
    found = await sandbox.get("/sandbox/courier/pickups", params={"reference": reference})
    return list(found.json())


async def _delivery_id(factory: Factory, order_id: uuid.UUID) -> uuid.UUID:
    async with factory() as session:
        current = await deliveries.delivery_for_order(session, order_id)
    assert current is not None
    return current.id


async def _file_refund(factory: Factory, order_id: uuid.UUID, customer: uuid.UUID) -> uuid.UUID:
    async with factory() as session:
        command = refunds.FileRefund(customer, order_id, "other", "changed my mind")
        refund = await refunds.file_refund(session, get_settings(), command)
    return refund.id


async def _withdraw_refund(factory: Factory, refund_id: uuid.UUID, customer: uuid.UUID) -> None:
    async with factory() as session:
        await refunds.withdraw(session, refund_id, customer)


async def _job(factory: Factory, correlation: uuid.UUID, kind: str) -> Any:
    return (await events_of(factory, correlation, kind))[-1].to_event().to_job_arg()


async def _book(ctx: dict[str, Any], delivery_id: uuid.UUID, trip: str = "delivery") -> Any:
    """A pickup booked at the partner as a try of our job would have (its reference and
    idempotency key: the delivery trip's, or the first return trip's), our side never
    told."""
    key = f"{delivery_id}:pickup" if trip == "delivery" else f"{delivery_id}:return-1-pickup"
    return await ctx["courier_gateway"].request_pickup(
        reference=deliveries.partner_reference(delivery_id, trip),
        address="Via Roma 1, Napoli",
        callback_url="http://127.0.0.1:9/webhooks/courier",
        idempotency_key=key,
    )


async def _return_pickup_state(factory: Factory, delivery_id: uuid.UUID) -> str | None:
    async with factory() as session:
        return await session.scalar(
            select(ReturnPickup.state).where(ReturnPickup.delivery_id == delivery_id)
        )


async def test_a_return_pickup_booked_by_a_try_that_died_is_withdrawn_with_its_refund(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """A try of ``request_return_pickup`` booked the rider at the partner and died before
    recording it; the refund is withdrawn. Neither the job's retry nor the withdraw
    handler may conclude "nothing was booked" without asking the partner."""
    order_id, customer = await delivered(session_factory, courier_ctx)
    delivery_id = await _delivery_id(session_factory, order_id)
    refund_id = await _file_refund(session_factory, order_id, customer)
    asked = await _job(session_factory, order_id, "DeliveryReturnRequested")
    # the try that died: the partner booked the rider, we never heard back
    booked = await _book(courier_ctx, delivery_id, "return")
    await _withdraw_refund(session_factory, refund_id, customer)
    withdrawn = await _job(session_factory, order_id, "DeliveryReturnCancelled")

    assert await delivery_tasks.withdraw_return_pickup(courier_ctx, withdrawn) == "withdrawn"
    assert await delivery_tasks.request_return_pickup(courier_ctx, asked) == "withdrawn"
    assert await delivery_tasks.withdraw_return_pickup(courier_ctx, withdrawn) == "settled"

    [pickup] = await _pickups(sandbox, f"{delivery_id}:return")
    assert pickup["id"] == booked.partner_ref
    assert pickup["status"] == "cancelled"
    assert pickup["operations"] == ["request", "cancel"]
    assert await _return_pickup_state(session_factory, delivery_id) == "withdrawn"


async def test_a_retry_alone_withdraws_a_return_pickup_its_dead_try_booked(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The withdraw handler ran while the partner still had nothing (or not at all):
    the request job's retry finds the refund withdrawn and must still ask the partner."""
    order_id, customer = await delivered(session_factory, courier_ctx)
    delivery_id = await _delivery_id(session_factory, order_id)
    refund_id = await _file_refund(session_factory, order_id, customer)
    asked = await _job(session_factory, order_id, "DeliveryReturnRequested")
    await _withdraw_refund(session_factory, refund_id, customer)
    withdrawn = await _job(session_factory, order_id, "DeliveryReturnCancelled")
    assert await delivery_tasks.withdraw_return_pickup(courier_ctx, withdrawn) == (
        "nothing to withdraw"
    )
    # the dying try's request reaches the partner only now
    await _book(courier_ctx, delivery_id, "return")

    assert await delivery_tasks.request_return_pickup(courier_ctx, asked) == "withdrawn"
    assert await delivery_tasks.request_return_pickup(courier_ctx, asked) == "withdrawn"

    [pickup] = await _pickups(sandbox, f"{delivery_id}:return")
    assert (pickup["status"], pickup["operations"]) == ("cancelled", ["request", "cancel"])
    assert await _return_pickup_state(session_factory, delivery_id) == "withdrawn"


async def test_a_courier_booked_by_a_try_that_died_is_withdrawn_when_the_order_is_cancelled(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The same gap on the way out: ``request_courier`` booked a rider and died before
    recording the pickup; the customer cancels. The rider must be released, once."""
    customer = uuid.uuid4()
    delivery_id, created = await _paid_with_delivery(
        session_factory, courier_ctx, customer_id=customer
    )
    order_id = uuid.UUID(created["payload"]["orderId"])
    booked = await _book(courier_ctx, delivery_id)
    async with session_factory() as session:
        await ordering.cancel_order(session, order_id, customer)
    cancelled = await _job(session_factory, order_id, "DeliveryCancelled")

    assert await delivery_tasks.withdraw_courier(courier_ctx, cancelled) == "withdrawn"
    assert await delivery_tasks.request_courier(courier_ctx, created) == "withdrawn"

    [pickup] = await _pickups(sandbox, str(delivery_id))
    assert pickup["id"] == booked.partner_ref
    assert (pickup["status"], pickup["operations"]) == ("cancelled", ["request", "cancel"])
    async with session_factory() as session:
        delivery = await deliveries.get(session, delivery_id)
    assert delivery is not None and delivery.partner_ref == booked.partner_ref


# -- with real processes: the worker SIGKILLed while the partner's answer is on its way


async def test_a_return_pickup_booked_before_the_worker_was_killed_is_withdrawn(
    fresh: Pipeline, factory: Factory
) -> None:
    """The partner books the return rider at once but answers after 3 s (our timeout is
    2 s): every try times out, yet the rider is booked. The delivery worker is SIGKILLed,
    the customer withdraws the refund, a new worker takes over. The partner's pickup must
    end cancelled, once, and our record of it withdrawn (the chaos suite's finding)."""
    settings = get_settings()
    redis = Redis.from_url(fresh.redis.url)
    async with HttpPaymentProvider.from_settings(settings) as provider:
        base = worker_context(settings, factory, redis=redis, state_redis=redis)
        ctx = {**payment_context(base, provider), "job_try": 1}
        order_id, customer = await delivered(factory, ctx)
    await redis.aclose()
    delivery_id = await _delivery_id(factory, order_id)
    reference = f"{delivery_id}:return"
    async with httpx.AsyncClient(base_url=fresh.sandbox_url, timeout=10) as sandbox:
        await sandbox.put("/sandbox/knobs/courier", json={"answerDelayMs": 3000})
        try:
            quick = {"PARTNER_TIMEOUT": "2"}
            refund_id = await _file_refund(factory, order_id, customer)
            fresh.start("relay", **quick)
            worker = fresh.start("worker", "delivery", **quick)

            async def booked() -> bool:
                return bool(await _pickups(sandbox, reference))

            await eventually(booked, "the return rider booked at the partner", timeout=90)
            fresh.kill(worker)
            await _withdraw_refund(factory, refund_id, customer)
        finally:
            await sandbox.put("/sandbox/knobs/courier", json={"answerDelayMs": 0})
        fresh.start("worker", "delivery", **quick)

        async def released() -> bool:
            pickups = await _pickups(sandbox, reference)
            state = await _return_pickup_state(factory, delivery_id)
            return [p["status"] for p in pickups] == ["cancelled"] and state == "withdrawn"

        await eventually(released, "the partner's return pickup cancelled", timeout=90)
        [pickup] = await _pickups(sandbox, reference)
        assert pickup["operations"] == ["request", "cancel"]


async def _paid(factory: Factory, ctx: dict[str, Any], **placing: Any) -> uuid.UUID:
    """An order placed and paid by the real handlers, no delivery yet: its id."""
    order_id = await place(factory, **placing)
    [placed] = await events_of(factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed.to_event().to_job_arg()) == "captured"
    [captured] = await events_of(factory, order_id, "PaymentCaptured")
    await handle_once(factory, "test.paid", captured.to_event(), ordering.on_payment_captured)
    return order_id


async def _paid_with_delivery(
    factory: Factory, ctx: dict[str, Any], **placing: Any
) -> tuple[uuid.UUID, Any]:
    """An order paid with its delivery queued, the rider not asked for yet: (delivery id,
    the ``DeliveryCreated`` job argument)."""
    order_id = await _paid(factory, ctx, **placing)
    [paid] = await events_of(factory, order_id, "OrderPaid")
    await handle_once(factory, "test.create", paid.to_event(), deliveries.create_for_paid_order)
    return await _delivery_id(factory, order_id), await _job(factory, order_id, "DeliveryCreated")


async def _cook_until_ready(factory: Factory, delivery_id: uuid.UUID) -> None:
    async with factory() as session:
        for _stage in ("preparing", "baking", "ready"):
            await deliveries.advance(session, delivery_id)
            await session.commit()


async def test_food_ready_before_the_rider_is_asked_for_is_told_with_the_request(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The partner was down while the kitchen cooked: when the rider is finally asked
    for, the food is already ready, and the same job tells the partner so (no job per
    ``CourierRequested`` waits for this rare case)."""
    delivery_id, created = await _paid_with_delivery(session_factory, courier_ctx)
    await _cook_until_ready(session_factory, delivery_id)

    assert await delivery_tasks.request_courier(courier_ctx, created) == "requested, ready"
    [pickup] = await _pickups(sandbox, str(delivery_id))
    assert pickup["operations"] == ["request", "ready"]


async def test_a_retry_tells_the_partner_the_food_is_ready_when_its_try_died_before(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """A try of ``request_courier`` recorded the pickup of food already ready, then died
    before telling the partner: its retry tells it."""
    delivery_id, created = await _paid_with_delivery(session_factory, courier_ctx)
    await _cook_until_ready(session_factory, delivery_id)
    # the try that died: booked and recorded, the partner never told about the food
    booked = await _book(courier_ctx, delivery_id)
    async with uow.transaction(session_factory) as session:
        await deliveries.record_pickup_requested(
            session, delivery_id, booked.partner_ref, event_of(created)
        )

    assert await delivery_tasks.request_courier(courier_ctx, created) == "notified"
    [pickup] = await _pickups(sandbox, str(delivery_id))
    assert pickup["operations"] == ["request", "ready"]


async def test_the_job_that_makes_the_ticket_asks_for_the_rider_once(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """``OrderPaid`` makes the kitchen's ticket and asks for a rider in one job; the
    same job again (a retry, a duplicate) makes no second ticket and books no second
    rider."""
    order_id = await _paid(session_factory, courier_ctx)
    paid = await _job(session_factory, order_id, "OrderPaid")

    assert await delivery_tasks.create(courier_ctx, paid) == "requested"
    assert await delivery_tasks.create(courier_ctx, paid) == "skipped"
    delivery_id = await _delivery_id(session_factory, order_id)
    assert delivery_id == deliveries.delivery_id_for(order_id)
    [pickup] = await _pickups(sandbox, str(delivery_id))
    assert pickup["operations"] == ["request"]
    events = await events_of(session_factory, order_id)
    kinds = [e.type for e in events]
    assert kinds.count("DeliveryCreated") == 1 and kinds.count("CourierRequested") == 1, kinds
    # asked first, then the ticket saved with its pickup: one transaction, in order
    [created] = [e for e in events if e.type == "DeliveryCreated"]
    [requested] = [e for e in events if e.type == "CourierRequested"]
    assert requested.seq == created.seq + 1
    assert (created.payload["version"], requested.payload["version"]) == (1, 2)
    async with session_factory() as session:
        delivery = await deliveries.get(session, delivery_id)
    assert delivery is not None and delivery.partner_ref == pickup["id"]
    assert delivery.courier_status == "requested"


async def test_a_ticket_made_with_its_rider_writes_its_board_card_once(
    session_factory: Factory, courier_ctx: dict[str, Any]
) -> None:
    """``DeliveryCreated`` and ``CourierRequested`` in one transaction: the card is the
    newest snapshot, written by one statement, and it says the rider was asked for."""
    order_id = await _paid(session_factory, courier_ctx)
    paid = await _job(session_factory, order_id, "OrderPaid")
    with SentStatements(courier_ctx["session_factory"]) as sent:
        assert await delivery_tasks.create(courier_ctx, paid) == "requested"

    writes = [
        q for q in sent.containing("status.board_cards") if not q.lstrip().startswith("SELECT")
    ]
    assert len(writes) == 1, writes
    delivery_id = await _delivery_id(session_factory, order_id)
    async with session_factory() as session:
        card = await session.get(BoardCard, delivery_id)
    assert card is not None
    assert (card.status, card.courier_status, card.version) == ("queued", "requested", 2)


async def test_the_kitchen_gets_its_ticket_while_the_partner_cannot_be_asked(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The rider is asked for before the ticket is saved; with the partner down, the
    ticket is saved anyway (the kitchen cooks), and the job's retry asks for the rider."""
    order_id = await _paid(session_factory, courier_ctx)
    paid = await _job(session_factory, order_id, "OrderPaid")
    await sandbox.put("/sandbox/knobs/courier", json={"down": True})
    try:
        with pytest.raises(Retry):
            await delivery_tasks.create(courier_ctx, paid)
    finally:
        await sandbox.put("/sandbox/knobs/courier", json={"down": False})
    async with session_factory() as session:
        waiting = await deliveries.delivery_for_order(session, order_id)
    assert waiting is not None, "the kitchen's ticket exists without a rider"
    assert (waiting.status, waiting.courier_status) == ("queued", "unassigned")

    assert await delivery_tasks.create(courier_ctx, paid) == "requested"
    [pickup] = await _pickups(sandbox, str(waiting.id))
    assert pickup["operations"] == ["request"]


async def test_a_rider_asked_for_just_before_a_cancel_is_withdrawn(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """A try asked the partner for a rider and died before saving the ticket; the
    customer cancelled meanwhile (a tombstone under the same delivery id). The retry
    finds the pickup by that id and withdraws it: no rider comes for a cancelled order."""
    customer = uuid.uuid4()
    order_id = await _paid(session_factory, courier_ctx, customer_id=customer)
    paid = await _job(session_factory, order_id, "OrderPaid")
    delivery_id = deliveries.delivery_id_for(order_id)
    await _book(courier_ctx, delivery_id)  # the try that died
    async with session_factory() as session:
        await ordering.cancel_order(session, order_id, customer)

    assert await delivery_tasks.create(courier_ctx, paid) == "withdrawn"
    [pickup] = await _pickups(sandbox, str(delivery_id))
    assert (pickup["status"], pickup["operations"]) == ("cancelled", ["request", "cancel"])
    assert await _delivery_id(session_factory, order_id) == delivery_id


async def test_a_ticket_and_a_cancel_racing_for_the_delivery_never_fail(
    session_factory: Factory, courier_ctx: dict[str, Any]
) -> None:
    """The ticket and a cancel's tombstone are one delivery (same id, same order): saved
    at the same moment, the cancel finds the ticket and cancels it, and neither fails.
    (The insert that met the other on the primary key, a 500 the chaos suite's
    partner-down phase found, needs a narrower interleaving than this loop makes; the
    inserts name no conflict target since, so every unique index is an arbiter.)"""
    for _ in range(RACES):
        customer = uuid.uuid4()
        order_id = await _paid(session_factory, courier_ctx, customer_id=customer)
        [paid] = await events_of(session_factory, order_id, "OrderPaid")
        await asyncio.gather(
            _ticket(session_factory, paid.to_event()),
            _cancel(session_factory, order_id, customer),
        )
        async with session_factory() as session:
            delivery = await deliveries.delivery_for_order(session, order_id)
        assert delivery is not None and delivery.status == "cancelled"


RACES = 12


async def _ticket(factory: Factory, paid: Any) -> None:
    async with uow.transaction(factory) as session:
        await deliveries.create_for_paid_order(session, paid, "pk_race")


async def _cancel(factory: Factory, order_id: uuid.UUID, customer: uuid.UUID) -> None:
    async with factory() as session:
        await ordering.cancel_order(session, order_id, customer)


async def _while_the_partner_answers(sandbox: httpx.AsyncClient, job: Any, meanwhile: Any) -> str:
    """Run ``job`` with the partner slow to answer, and ``meanwhile`` once it is waiting
    for the answer: between the job's look-up and its insert."""
    await sandbox.put("/sandbox/knobs/courier", json={"latencyMs": 1200})
    try:
        running = asyncio.create_task(job)
        await asyncio.sleep(0.4)
        assert not running.done(), "the partner answered too soon to test anything"
        await meanwhile
        return str(await running)
    finally:
        await sandbox.put("/sandbox/knobs/courier", json={"latencyMs": 0})


async def test_a_cancel_while_the_rider_is_asked_for_withdraws_the_rider(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """The customer cancels while the partner is being asked: the tombstone is saved
    first, the ticket's insert loses to it, and the rider just booked is withdrawn."""
    customer = uuid.uuid4()
    order_id = await _paid(session_factory, courier_ctx, customer_id=customer)
    paid = await _job(session_factory, order_id, "OrderPaid")

    outcome = await _while_the_partner_answers(
        sandbox,
        delivery_tasks.create(courier_ctx, paid),
        _cancel(session_factory, order_id, customer),
    )
    assert outcome == "withdrawn"
    delivery_id = deliveries.delivery_id_for(order_id)
    [pickup] = await _pickups(sandbox, str(delivery_id))
    assert (pickup["status"], pickup["operations"]) == ("cancelled", ["request", "cancel"])


async def test_a_ticket_an_older_release_made_meanwhile_gets_the_rider_alone(
    session_factory: Factory, courier_ctx: dict[str, Any], sandbox: httpx.AsyncClient
) -> None:
    """During an upgrade, a copy of the job on an older release makes the ticket (a
    random id) while this one asks the partner: the pickup asked for under the new id is
    withdrawn, and the older ticket gets its own."""
    order_id = await _paid(session_factory, courier_ctx)
    paid = await _job(session_factory, order_id, "OrderPaid")

    async def older_ticket() -> None:
        """The ticket as an older release saved it: a random id, no rider yet."""
        async with session_factory() as session, session.begin():
            await session.execute(
                insert(Delivery).values(
                    id=uuid.uuid4(),
                    order_id=order_id,
                    customer_id=uuid.UUID(paid["payload"]["customerId"]),
                    status="queued",
                    courier_status="unassigned",
                    address="Via Roma 1, Napoli",
                    items=[],
                    version=1,
                )
            )

    outcome = await _while_the_partner_answers(
        sandbox, delivery_tasks.create(courier_ctx, paid), older_ticket()
    )
    assert outcome == "requested"
    older = await _delivery_id(session_factory, order_id)
    assert older != deliveries.delivery_id_for(order_id)
    [withdrawn] = await _pickups(sandbox, str(deliveries.delivery_id_for(order_id)))
    assert withdrawn["status"] == "cancelled"
    [kept] = await _pickups(sandbox, str(older))
    assert kept["operations"] == ["request"]
