"""Follow-ups (``app.platform.uow.FollowUp``): the payment worker makes the paid order's
delivery right after the commit that captured its payment, instead of the relay handing
``OrderPaid`` to the delivery job; what it cannot finish goes to that job at once, and
what a dead process left undone, the reconciler hands over. The web hands the placed
order to the payment job itself, right after the placement commits."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.breakers import COURIER
from app.delivery import tasks as delivery_tasks
from app.delivery.gateway import CourierUnavailable, HttpCourierGateway
from app.delivery.models import CourierStatus, Delivery
from app.payment import tasks as payment_tasks
from app.platform import metrics, uow
from app.platform.breaker import BreakerPolicy, CircuitBreaker
from app.platform.db import create_session_factory
from app.platform.events import Event
from app.platform.outbox import InboxRow, OutboxRow, PipelineAction
from app.platform.partner_http import partner_client
from app.platform.reconciler import reconcile_batch
from app.platform.relay import drain, enqueue, relay_batch
from app.platform.settings import get_settings
from app.subscriptions import (
    CAPTURE_PAYMENT,
    CREATE_DELIVERY,
    REACTIONS,
    SUBSCRIPTIONS,
    enqueued_after_commit,
)
from tests.support.inproc import as_in_the_web, events_of, place
from workers.context import courier_context, follow_up

Factory = async_sessionmaker[AsyncSession]
DEAD_PARTNER = "http://127.0.0.1:9"


def _payment_worker(ctx: dict[str, Any], gateway: HttpCourierGateway) -> dict[str, Any]:
    """A payment worker's ``ctx`` as ``workers.payment`` starts it, on a session factory
    of its own (the follow-ups are installed on it), with a courier breaker of its own."""
    factory = as_in_the_web(create_session_factory(ctx["session_factory"].kw["bind"]))
    uow.react_in_transaction(factory, REACTIONS, SUBSCRIPTIONS)
    worker = courier_context({**ctx, "session_factory": factory}, gateway)
    policy = BreakerPolicy.from_settings(get_settings())
    name = f"{COURIER}-{uuid.uuid4().hex[:8]}"
    breaker = CircuitBreaker(ctx["state_redis"], name, policy, (CourierUnavailable,))
    worker["courier_breaker"] = breaker
    return dict(worker)


async def _capture(worker: dict[str, Any], order_id: uuid.UUID) -> str:
    [placed] = await events_of(worker["session_factory"], order_id, "OrderPlaced")
    return str(await payment_tasks.capture(worker, placed.to_event().to_job_arg()))


async def _paid(worker: dict[str, Any], outcome: str) -> uuid.UUID:
    """An order placed and captured by the payment job's own code; its follow-up counted
    once with ``outcome``."""
    order_id = await place(worker["session_factory"])
    before = _counted(outcome)
    assert await _capture(worker, order_id) == "captured"
    assert _counted(outcome) == before + 1
    return order_id


async def _delivery(factory: Factory, order_id: uuid.UUID) -> Delivery | None:
    async with factory() as session:
        return await session.scalar(select(Delivery).where(Delivery.order_id == order_id))


async def _handlers(factory: Factory, event_id: uuid.UUID) -> set[str]:
    async with factory() as session:
        rows = await session.scalars(select(InboxRow.handler).where(InboxRow.event_id == event_id))
        return set(rows)


def _counted(outcome: str) -> float:
    labels = {"task": delivery_tasks.CREATE, "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("pizzeria_follow_ups_total", labels) or 0.0


async def _queued(jobs: ArqRedis, queue: str) -> set[str]:
    return {job.job_id for job in await jobs.queued_jobs(queue_name=queue) if job.job_id}


async def test_the_payment_worker_asks_for_the_rider_and_saves_the_ticket_after_the_capture(
    ctx: dict[str, Any], jobs: ArqRedis
) -> None:
    async with HttpCourierGateway.from_settings(get_settings()) as gateway:
        worker = _payment_worker(ctx, gateway)
        follow_up(worker, jobs)
        order_id = await _paid(worker, "done")

    factory = worker["session_factory"]
    delivery = await _delivery(factory, order_id)
    assert delivery is not None, "the kitchen has its ticket without a delivery job"
    assert delivery.partner_ref, "and the rider was asked for"
    assert delivery.courier_status == CourierStatus.requested
    [paid] = await events_of(factory, order_id, "OrderPaid")
    assert paid.follow_ups == [delivery_tasks.CREATE]
    assert paid.published_at is not None, "nothing for the relay: written published"
    assert paid.finished_at is None, "finished once the reconciler saw its inbox row"
    [captured] = await events_of(factory, order_id, "PaymentCaptured")
    assert captured.finished_at is not None, "its one subscriber reacted in its transaction"
    assert await _handlers(factory, paid.id) == {delivery_tasks.CREATE}
    [requested] = await events_of(factory, order_id, "CourierRequested")
    assert requested.causation_id == str(paid.id)

    await drain(factory, jobs, SUBSCRIPTIONS)
    assert f"{paid.id}:{delivery_tasks.CREATE}" not in await _queued(jobs, "delivery")


async def test_a_follow_up_the_partner_fails_goes_to_the_delivery_job_at_once(
    ctx: dict[str, Any], jobs: ArqRedis
) -> None:
    """The partner cannot be reached: the capture stands, and the delivery job gets the
    event now (not after the relay or the reconciler), and makes the delivery once the
    partner is back."""
    settings = get_settings()
    dead = HttpCourierGateway(partner_client(DEAD_PARTNER, settings.partners.timeout_seconds))
    async with dead:
        worker = _payment_worker(ctx, dead)
        follow_up(worker, jobs)
        order_id = await _paid(worker, "handed_over")

    factory = worker["session_factory"]
    assert await _delivery(factory, order_id) is None
    [paid] = await events_of(factory, order_id, "OrderPaid")
    assert f"{paid.id}:{delivery_tasks.CREATE}" in await _queued(jobs, "delivery")

    async with HttpCourierGateway.from_settings(settings) as gateway:
        delivery_worker = {**courier_context(ctx, gateway), "job_try": 1}
        assert await delivery_tasks.create(delivery_worker, paid.to_event().to_job_arg())
    delivery = await _delivery(factory, order_id)
    assert delivery is not None and delivery.partner_ref


async def test_the_reconciler_hands_over_a_follow_up_its_process_left_undone(
    ctx: dict[str, Any], jobs: ArqRedis
) -> None:
    """The process that recorded the event could neither finish the follow-up nor hand it
    over (it died; here, Redis refused the hand-over): the relay leaves it out, and the
    reconciler hands it to the delivery job once ``EVENT_FOLLOW_UP_SECONDS`` have passed,
    not before, and only once."""

    async def not_done(event: Event) -> bool:
        return False

    async def redis_away(arg: dict[str, Any], sub: object) -> None:
        raise ConnectionError("Redis is away")

    async with HttpCourierGateway.from_settings(get_settings()) as gateway:
        worker = _payment_worker(ctx, gateway)
        factory = worker["session_factory"]
        follow_ups = {"OrderPaid": [uow.FollowUp(CREATE_DELIVERY, not_done)]}
        uow.follow_up_after_commit(factory, follow_ups, redis_away)
        order_id = await _paid(worker, "left")
    [paid] = await events_of(factory, order_id, "OrderPaid")
    job = f"{paid.id}:{delivery_tasks.CREATE}"

    await drain(factory, jobs, SUBSCRIPTIONS)
    assert job not in await _queued(jobs, "delivery"), "the relay leaves a follow-up out"
    await reconcile_batch(
        factory, jobs, SUBSCRIPTIONS, redeliver_after=3600.0, follow_up_after=3600.0
    )
    assert job not in await _queued(jobs, "delivery"), "not before its time"

    passed = await reconcile_batch(
        factory, jobs, SUBSCRIPTIONS, redeliver_after=3600.0, follow_up_after=0.0
    )
    # the pass may hand over rows earlier tests in this process left too: ask about ours
    assert paid.id in passed.checked
    assert job in await _queued(jobs, "delivery")
    [row] = await events_of(factory, order_id, "OrderPaid")
    assert row.follow_ups is None, "handed over: its job's from now on"
    [detail] = await _reenqueued(factory, paid.id)
    assert "not followed up by the process that recorded it" in detail, "once, saying why"

    again = await reconcile_batch(
        factory, jobs, SUBSCRIPTIONS, redeliver_after=3600.0, follow_up_after=0.0
    )
    assert paid.id not in again.checked
    assert len(await _reenqueued(factory, paid.id)) == 1, "handed over once"


async def _reenqueued(factory: Factory, event_id: uuid.UUID) -> list[str]:
    """What the reconciler logged for each time it handed ``event_id`` over."""
    async with factory() as session:
        found = await session.scalars(
            select(PipelineAction.detail).where(
                PipelineAction.event_id == event_id, PipelineAction.action == "re-enqueued"
            )
        )
        return list(found)


def _web(ctx: dict[str, Any], hand_over: uow.HandOver) -> Factory:
    """A session factory as the web installs it (``app.main``): reactions, the read side,
    and the jobs it enqueues after the commit, through ``hand_over``."""
    factory = as_in_the_web(create_session_factory(ctx["session_factory"].kw["bind"]))
    uow.react_in_transaction(factory, REACTIONS, SUBSCRIPTIONS)
    uow.follow_up_after_commit(factory, enqueued_after_commit(), hand_over)
    return factory


def _capture_counted(outcome: str) -> float:
    labels = {"task": payment_tasks.CAPTURE, "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("pizzeria_follow_ups_total", labels) or 0.0


async def test_the_web_hands_the_placed_order_to_the_payment_job_after_its_commit(
    ctx: dict[str, Any], jobs: ArqRedis
) -> None:
    """No NOTIFY, no relay claim: the placement's commit is followed by the capture job's
    enqueue, and the outbox row is written published, naming the job."""
    factory = _web(ctx, functools.partial(enqueue, jobs))
    before = _capture_counted("enqueued")
    order_id = await place(factory)
    assert _capture_counted("enqueued") == before + 1

    [placed] = await events_of(factory, order_id, "OrderPlaced")
    job = f"{placed.id}:{payment_tasks.CAPTURE}"
    assert job in await _queued(jobs, CAPTURE_PAYMENT.queue), "enqueued by the web itself"
    assert placed.follow_ups == [payment_tasks.CAPTURE]
    assert placed.published_at is not None, "nothing for the relay: written published"
    assert placed.finished_at is None, "finished once the capture's inbox row is there"

    # taken off the queue: had the relay claimed the row, it would enqueue it again
    await jobs.delete(job_key_prefix + job)
    await jobs.zrem(CAPTURE_PAYMENT.queue, job)
    await drain(factory, jobs, SUBSCRIPTIONS)
    assert job not in await _queued(jobs, CAPTURE_PAYMENT.queue), "the relay leaves it out"

    assert await _capture(ctx, order_id) == "captured"
    passed = await reconcile_batch(
        factory, jobs, SUBSCRIPTIONS, redeliver_after=3600.0, follow_up_after=0.0
    )
    assert placed.id in passed.checked
    assert job not in await _queued(jobs, CAPTURE_PAYMENT.queue), "done: not sent again"
    [row] = await events_of(factory, order_id, "OrderPlaced")
    assert row.finished_at is not None, "the capture's inbox row finished it"


async def test_a_placed_order_redis_refused_is_handed_over_by_the_reconciler(
    ctx: dict[str, Any], jobs: ArqRedis
) -> None:
    """Redis refused the enqueue after the placement committed (or the web died between):
    the order stands, and the reconciler hands it to the payment job after
    ``EVENT_FOLLOW_UP_SECONDS``."""

    async def redis_away(arg: dict[str, Any], sub: object) -> None:
        raise ConnectionError("Redis is away")

    factory = _web(ctx, redis_away)
    before = _capture_counted("left")
    order_id = await place(factory)
    assert _capture_counted("left") == before + 1
    [placed] = await events_of(factory, order_id, "OrderPlaced")
    job = f"{placed.id}:{payment_tasks.CAPTURE}"
    assert job not in await _queued(jobs, CAPTURE_PAYMENT.queue)

    await reconcile_batch(
        factory, jobs, SUBSCRIPTIONS, redeliver_after=3600.0, follow_up_after=3600.0
    )
    assert job not in await _queued(jobs, CAPTURE_PAYMENT.queue), "not before its time"
    passed = await reconcile_batch(
        factory, jobs, SUBSCRIPTIONS, redeliver_after=3600.0, follow_up_after=0.0
    )
    assert placed.id in passed.checked
    assert job in await _queued(jobs, CAPTURE_PAYMENT.queue)


async def test_a_replayed_row_gets_its_follow_up_from_the_relay_once_it_had_its_time(
    ctx: dict[str, Any], jobs: ArqRedis
) -> None:
    """A replay (a restored backup, an operator) marks rows unpublished again. The relay
    leaves a follow-up out while the recording process may still be doing it, and hands
    it over like any job once ``EVENT_FOLLOW_UP_SECONDS`` have passed since the event: a
    replay every few seconds would otherwise keep resetting the reconciler's clock."""

    async def redis_away(arg: dict[str, Any], sub: object) -> None:
        raise ConnectionError("Redis is away")

    factory = _web(ctx, redis_away)  # the web's enqueue never reached Redis
    order_id = await place(factory)
    [placed] = await events_of(factory, order_id, "OrderPlaced")
    job = f"{placed.id}:{payment_tasks.CAPTURE}"

    async def replay() -> None:
        async with factory() as session, session.begin():
            unpublished = update(OutboxRow).where(OutboxRow.id == placed.id)
            await session.execute(unpublished.values(published_at=None))

    await replay()
    await relay_batch(factory, jobs, SUBSCRIPTIONS, follow_up_after=3600.0)
    assert job not in await _queued(jobs, CAPTURE_PAYMENT.queue), "its process may be on it"
    await replay()
    await relay_batch(factory, jobs, SUBSCRIPTIONS, follow_up_after=0.0)
    assert job in await _queued(jobs, CAPTURE_PAYMENT.queue), "had its time: a job now"
