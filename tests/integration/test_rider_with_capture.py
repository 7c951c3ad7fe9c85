"""The rider booked with the capture (``app.subscriptions.WITH_CAPTURE``): the payment
worker asks the delivery partner for a rider right after the charge, and the kitchen's
ticket is saved in the capture's own transaction. A cancel that comes in between, or a
try that died after booking, never leaves a rider booked for an unpaid order; a partner
that cannot be asked leaves the ticket to the follow-up and the delivery job."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.breakers import COURIER
from app.delivery import service as delivery_service
from app.delivery import tasks as delivery_tasks
from app.delivery.gateway import CourierUnavailable, HttpCourierGateway
from app.delivery.models import CourierStatus, Delivery, DeliveryStatus
from app.ordering import service as ordering
from app.ordering.models import Order, OrderStatus
from app.payment import tasks as payment_tasks
from app.platform import metrics, uow
from app.platform.breaker import BreakerPolicy, CircuitBreaker
from app.platform.db import create_session_factory
from app.platform.events import Event
from app.platform.outbox import InboxRow
from app.platform.partner_http import partner_client
from app.platform.reconciler import reconcile_batch
from app.platform.relay import drain
from app.platform.settings import get_settings
from app.subscriptions import CAPTURE_PAYMENT, REACTIONS, SUBSCRIPTIONS
from tests.support.inproc import as_in_the_web, events_of, handled, place
from tests.support.sent import SentStatements
from workers.context import courier_context, follow_up, ready_with_capture

Factory = async_sessionmaker[AsyncSession]
DEAD_PARTNER = "http://127.0.0.1:9"


@pytest.fixture
async def gateway() -> AsyncIterator[HttpCourierGateway]:
    async with HttpCourierGateway.from_settings(get_settings()) as live:
        yield live


def _payment_worker(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> dict[str, Any]:
    """A payment worker's ``ctx`` as ``workers.payment`` starts it: follow-ups installed
    on a session factory of its own, the rider booked with the capture, a courier breaker
    of its own."""
    factory = as_in_the_web(create_session_factory(ctx["session_factory"].kw["bind"]))
    uow.react_in_transaction(factory, REACTIONS, SUBSCRIPTIONS)
    worker = dict(courier_context({**ctx, "session_factory": factory}, gateway))
    policy = BreakerPolicy.from_settings(get_settings())
    name = f"{COURIER}-{uuid.uuid4().hex[:8]}"
    worker["courier_breaker"] = CircuitBreaker(
        ctx["state_redis"], name, policy, (CourierUnavailable,)
    )
    follow_up(worker, jobs)
    ready_with_capture(worker)
    return worker


async def _capture(worker: dict[str, Any], order_id: uuid.UUID) -> str:
    [placed] = await events_of(worker["session_factory"], order_id, "OrderPlaced")
    return str(await payment_tasks.capture(worker, placed.to_event().to_job_arg()))


async def _delivery(factory: Factory, order_id: uuid.UUID) -> Delivery | None:
    async with factory() as session:
        return await session.scalar(select(Delivery).where(Delivery.order_id == order_id))


async def _order_status(factory: Factory, order_id: uuid.UUID) -> str | None:
    async with factory() as session:
        return await session.scalar(select(Order.status).where(Order.id == order_id))


async def _writing_transaction(factory: Factory, table: str, order_id: uuid.UUID) -> str:
    """The id of the transaction that last wrote the order's row of ``table``."""
    async with factory() as session:
        query = text(f"SELECT xmin::text FROM {table} WHERE order_id = :id")
        return str(await session.scalar(query, {"id": order_id}))


def _follow_ups(outcome: str) -> float:
    labels = {"task": delivery_tasks.CREATE, "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("pizzeria_follow_ups_total", labels) or 0.0


async def _pickup_status(gateway: HttpCourierGateway, order_id: uuid.UUID) -> str | None:
    delivery_id = delivery_service.delivery_id_for(order_id)
    found = await gateway.find_pickup(idempotency_key=f"{delivery_id}:pickup")
    return found.status if found else None


Prepare = Callable[[Event], Awaitable[uow.Prepared | None]]


def _book_then(worker: dict[str, Any], meanwhile: Callable[[], Awaitable[object]]) -> Prepare:
    """The worker's capture books the rider as usual, then ``meanwhile`` happens before
    the capture records; the usual booking is returned (to put back)."""
    book: Prepare = worker["prepare_paid"]

    async def booked(event: Event) -> uow.Prepared | None:
        prepared = await book(event)
        await meanwhile()
        return prepared

    worker["prepare_paid"] = booked
    return book


async def _cancel(factory: Factory, order_id: uuid.UUID, customer_id: uuid.UUID) -> None:
    async with factory() as session:
        await ordering.cancel_order(session, order_id, customer_id)


def _dead_partner() -> HttpCourierGateway:
    """A delivery partner nobody answers for."""
    timeout = get_settings().partners.timeout_seconds
    return HttpCourierGateway(partner_client(DEAD_PARTNER, timeout))


async def test_the_capture_saves_the_ticket_with_its_rider_in_its_own_transaction(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> None:
    worker = _payment_worker(ctx, gateway, jobs)
    factory = worker["session_factory"]
    order_id = await place(factory)
    done, handed = _follow_ups("done"), _follow_ups("handed_over")

    assert await _capture(worker, order_id) == "captured, rider booked"

    delivery = await _delivery(factory, order_id)
    assert delivery is not None and delivery.partner_ref, "the ticket, with its rider asked"
    assert delivery.courier_status == CourierStatus.requested
    assert await _pickup_status(gateway, order_id) == "requested"
    assert await _writing_transaction(
        factory, "delivery.deliveries", order_id
    ) == await _writing_transaction(factory, "payment.payments", order_id), "one commit"
    assert (_follow_ups("done"), _follow_ups("handed_over")) == (done, handed), (
        "no follow-up after the commit: its reaction did the work"
    )
    [paid] = await events_of(factory, order_id, "OrderPaid")
    async with factory() as session:
        handlers = set(
            await session.scalars(select(InboxRow.handler).where(InboxRow.event_id == paid.id))
        )
    assert handlers == {delivery_tasks.CREATE}
    [created] = await events_of(factory, order_id, "DeliveryCreated")
    assert created.causation_id == str(paid.id)
    queued = {job.job_id for job in await jobs.queued_jobs(queue_name="delivery")}
    assert f"{paid.id}:{delivery_tasks.CREATE}" not in queued


async def test_an_order_cancelled_while_its_card_was_charged_gets_no_rider(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> None:
    """The customer cancels between the charge (and the rider booked) and the capture's
    record: the order is not made paid, no ticket is saved, and the rider is released."""
    worker = _payment_worker(ctx, gateway, jobs)
    factory = worker["session_factory"]
    customer_id = uuid.uuid4()
    order_id = await place(factory, customer_id=customer_id)
    _book_then(worker, lambda: _cancel(factory, order_id, customer_id))
    assert await _capture(worker, order_id) == "captured"  # the void job gives it back

    assert await _order_status(factory, order_id) == OrderStatus.cancelled
    delivery = await _delivery(factory, order_id)
    assert delivery is not None and delivery.status == DeliveryStatus.cancelled, "tombstone"
    assert delivery.partner_ref is None
    assert await _pickup_status(gateway, order_id) == "cancelled", "the rider released"


async def test_a_rider_the_partner_would_not_release_is_released_by_the_retry(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> None:
    """The order was cancelled while its card was charged, and the partner went away
    right after booking the rider: the capture commits (the money is settled by the void
    job), the job is retried, and the retry releases the rider once the partner is back."""
    worker = _payment_worker(ctx, gateway, jobs)
    factory = worker["session_factory"]
    customer_id = uuid.uuid4()
    order_id = await place(factory, customer_id=customer_id)
    dead = _dead_partner()

    async def cancel_and_lose_the_partner() -> None:
        await _cancel(factory, order_id, customer_id)
        worker["courier_gateway"] = dead

    _book_then(worker, cancel_and_lose_the_partner)
    async with dead:
        with pytest.raises(Retry):
            await _capture(worker, order_id)
    assert await _pickup_status(gateway, order_id) == "requested", "not released yet"

    worker["courier_gateway"] = gateway
    assert await _capture(worker, order_id) == "skipped", "the payment was settled"
    assert await _pickup_status(gateway, order_id) == "cancelled"


async def test_a_retried_capture_releases_the_rider_a_dead_try_booked_for_a_cancelled_order(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> None:
    """A try charged the card and booked the rider, then died before recording; the
    customer cancelled. The next try settles the cancel and releases that rider."""
    worker = _payment_worker(ctx, gateway, jobs)
    factory = worker["session_factory"]
    customer_id = uuid.uuid4()
    order_id = await place(factory, customer_id=customer_id)
    [placed] = await events_of(factory, order_id, "OrderPlaced")
    assert await worker["prepare_paid"](placed.to_event()) is not None  # the dead try's
    assert await _pickup_status(gateway, order_id) == "requested"
    await _cancel(factory, order_id, customer_id)

    assert await _capture(worker, order_id) == "voided"  # a first try of a copy, too

    assert await _pickup_status(gateway, order_id) == "cancelled"


async def test_a_copy_that_recorded_first_keeps_the_rider_they_both_booked(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> None:
    """Two copies of the capture job (a redelivery): both charge and book, under the same
    keys, the same charge and the same rider. The copy that records second finds the
    ticket saved with that rider and leaves it booked."""
    worker = _payment_worker(ctx, gateway, jobs)
    factory = worker["session_factory"]
    order_id = await place(factory)
    copy = dict(worker)

    async def the_copy_records() -> None:
        assert await _capture(copy, order_id) == "captured, rider booked"

    _book_then(worker, the_copy_records)
    assert await _capture(worker, order_id) == "captured, rider booked"

    delivery = await _delivery(factory, order_id)
    assert delivery is not None and delivery.status == DeliveryStatus.queued
    assert await _pickup_status(gateway, order_id) == "requested", "the rider still comes"


async def test_a_partner_away_at_the_charge_leaves_the_ticket_to_the_delivery_job(
    ctx: dict[str, Any], jobs: ArqRedis
) -> None:
    """The rider cannot be booked with the capture: the order is paid all the same, and
    the follow-up (which cannot reach the partner either) hands the event to the delivery
    job at once."""
    dead = _dead_partner()
    async with dead:
        worker = _payment_worker(ctx, dead, jobs)
        factory = worker["session_factory"]
        order_id = await place(factory)
        handed = _follow_ups("handed_over")
        assert await _capture(worker, order_id) == "captured"

    assert await _order_status(factory, order_id) == OrderStatus.paid
    assert await _delivery(factory, order_id) is None
    assert _follow_ups("handed_over") == handed + 1
    [paid] = await events_of(factory, order_id, "OrderPaid")
    queued = {job.job_id for job in await jobs.queued_jobs(queue_name="delivery")}
    assert f"{paid.id}:{delivery_tasks.CREATE}" in queued


async def test_a_copy_that_recorded_first_without_a_rider_leaves_it_to_the_delivery_job(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> None:
    """Two copies of the capture job: this one books the rider; the other could not reach
    the partner and records first, leaving the ticket to the delivery job. The order is
    paid, so the rider this copy booked is the one that job finds under the same key: it
    is kept, not withdrawn (a withdrawn pickup would come back to the job cancelled, and
    the kitchen's "ready" would be refused by the partner)."""
    worker = _payment_worker(ctx, gateway, jobs)
    factory = worker["session_factory"]
    order_id = await place(factory)
    copy = dict(worker)
    dead = _dead_partner()

    async def a_copy_records_without_the_partner() -> None:
        worker["courier_gateway"] = dead
        assert await _capture(copy, order_id) == "captured"
        worker["courier_gateway"] = gateway

    _book_then(worker, a_copy_records_without_the_partner)
    async with dead:
        assert await _capture(worker, order_id) == "captured, rider booked"

    assert await _order_status(factory, order_id) == OrderStatus.paid
    assert await _delivery(factory, order_id) is None, "the ticket is the delivery job's"
    assert await _pickup_status(gateway, order_id) == "requested", "the rider is kept"
    [paid] = await events_of(factory, order_id, "OrderPaid")
    assert await delivery_tasks.create(worker, paid.to_event().to_job_arg()) == "requested"
    delivery = await _delivery(factory, order_id)
    assert delivery is not None and delivery.status == DeliveryStatus.queued
    assert delivery.partner_ref and delivery.courier_status == CourierStatus.requested
    assert await _pickup_status(gateway, order_id) == "requested"


class _Died(Exception):
    """The payment worker killed between the capture's commit and what follows it."""


async def _capture_handled(factory: Factory, order_id: uuid.UUID) -> bool:
    [placed] = await events_of(factory, order_id, "OrderPlaced")
    return await handled(factory, payment_tasks.CAPTURE, placed.id)


async def test_a_capture_that_dies_before_releasing_the_rider_of_a_cancelled_order_is_run_again(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> None:
    """The order was cancelled while its card was charged and its rider booked; the
    capture commits (the payment recorded) and the worker dies before the rider is
    released, and Redis has lost the job. PostgreSQL still says the capture is not done
    (its inbox row went back), so the reconciler sends the job again, which releases the
    rider; an order made paid commits its capture's inbox row with it, as before."""
    worker = _payment_worker(ctx, gateway, jobs)
    factory = worker["session_factory"]
    customer_id = uuid.uuid4()
    order_id = await place(factory, customer_id=customer_id)
    book = _book_then(worker, lambda: _cancel(factory, order_id, customer_id))
    cancelled_meanwhile: Prepare = worker["prepare_paid"]

    async def book_cancel_then_die_after_the_commit(event: Event) -> uow.Prepared | None:
        prepared = await cancelled_meanwhile(event)
        assert prepared is not None

        async def die() -> bool:
            raise _Died

        return uow.Prepared(prepared.reactions, die)

    worker["prepare_paid"] = book_cancel_then_die_after_the_commit
    with pytest.raises(_Died):
        await _capture(worker, order_id)
    assert await _order_status(factory, order_id) == OrderStatus.cancelled
    assert await _pickup_status(gateway, order_id) == "requested", "not released: it died"
    assert not await _capture_handled(factory, order_id), "PostgreSQL: not done"

    [placed] = await events_of(factory, order_id, "OrderPlaced")
    job = f"{placed.id}:{payment_tasks.CAPTURE}"
    await drain(factory, jobs, SUBSCRIPTIONS)  # the relay had handed it to the worker
    await jobs.delete(job_key_prefix + job)  # and Redis lost it
    await jobs.zrem(CAPTURE_PAYMENT.queue, job)
    async with factory() as session, session.begin():  # long enough ago to be overdue
        await session.execute(
            text(
                "UPDATE platform.outbox SET enqueued_at = now() - interval '2 hours' WHERE id = :id"
            ),
            {"id": placed.id},
        )
    passed = await reconcile_batch(factory, jobs, SUBSCRIPTIONS, redeliver_after=3600.0)
    assert placed.id in passed.checked  # with whatever else earlier tests left overdue
    queued = {job.job_id for job in await jobs.queued_jobs(queue_name=CAPTURE_PAYMENT.queue)}
    assert job in queued, "PostgreSQL said the capture was not done: sent again"

    worker["prepare_paid"] = book
    assert await _capture(worker, order_id) == "skipped", "the payment was recorded"
    assert await _pickup_status(gateway, order_id) == "cancelled", "the rider released"


async def test_a_capture_that_made_the_order_paid_is_handled_in_its_own_commit(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> None:
    worker = _payment_worker(ctx, gateway, jobs)
    factory = worker["session_factory"]
    order_id = await place(factory)
    assert await _capture(worker, order_id) == "captured, rider booked"
    assert await _capture_handled(factory, order_id)
    [placed] = await events_of(factory, order_id, "OrderPlaced")
    async with factory() as session:
        inbox_tx = await session.scalar(
            text("SELECT xmin::text FROM platform.inbox WHERE handler = :h AND event_id = :e"),
            {"h": payment_tasks.CAPTURE, "e": placed.id},
        )
    assert inbox_tx == await _writing_transaction(factory, "payment.payments", order_id)


async def test_the_capture_writes_its_changes_card_and_events_in_one_statement(
    ctx: dict[str, Any], gateway: HttpCourierGateway, jobs: ArqRedis
) -> None:
    """The payment and the order changed, the board's card and the order's view, the
    events and their inbox rows: added (``Statement.add``), all written by the capture's
    last statement before its commit (the locks and the ticket's insert in between are on
    other tables: ``Statement._waits_for``). The card's upsert asks nothing back (the
    board is told of every snapshot), so it is no round trip of its own either."""
    worker = _payment_worker(ctx, gateway, jobs)
    factory = worker["session_factory"]
    order_id = await place(factory)

    with SentStatements(factory) as sent:
        assert await _capture(worker, order_id) == "captured, rider booked"

    [written] = sent.containing("INSERT INTO status.board_cards")
    for part in (
        "UPDATE payment.payments",
        "UPDATE ordering.orders",
        "UPDATE status.order_views",
        "INSERT INTO platform.outbox",
        "INSERT INTO platform.inbox",
    ):
        assert part in written, part
    assert "RETURNING" not in written
    assert sent.queries[-1].strip().rstrip(";").upper() == "COMMIT"
    assert sent.queries[-2] == written, "the last statement before the commit"
    begun = len(sent.queries) - sent.queries[::-1].index(sent.starting("BEGIN")[-1]) - 1
    # the claim, the payment's and the order's locks, the ticket, the view's lock, that one
    assert len(sent.queries[begun + 1 : -1]) == 6, sent.queries[begun:]
    async with factory() as session:
        card = await session.scalar(
            text("SELECT status FROM status.board_cards WHERE order_id = :id"), {"id": order_id}
        )
    assert card == "queued"
