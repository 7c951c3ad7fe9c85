"""The relay: events written while Redis is unreachable are delivered once it is back."""

from __future__ import annotations

import uuid

from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ordering.events import OrderPaymentFailed
from app.payment.models import PaymentStatus
from app.payment.service import payment_for_order
from app.platform import uow
from app.platform.db import create_session_factory
from app.platform.outbox import record_event
from app.platform.redis import create_job_pool, dumps_job, loads_job
from app.platform.relay import drain, relay_batch
from app.platform.settings import get_settings
from app.subscriptions import SUBSCRIPTIONS
from tests.support.inproc import events_of, place, run_burst
from tests.support.processes import free_port

Factory = async_sessionmaker[AsyncSession]


async def test_events_wait_for_redis_and_are_delivered_when_it_returns(
    session_factory: Factory, sandbox_url: str
) -> None:
    order_id = await place(session_factory)
    unreachable = ArqRedis(
        host="127.0.0.1", port=free_port(), job_serializer=dumps_job, job_deserializer=loads_job
    )
    try:
        for _ in range(2):
            try:
                await relay_batch(session_factory, unreachable, SUBSCRIPTIONS)
            except RedisConnectionError:
                pass
            else:
                raise AssertionError("the relay must not claim success without Redis")
    finally:
        await unreachable.aclose()
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert placed.published_at is None, "nothing is lost while Redis is down"

    jobs = await create_job_pool(get_settings())
    try:
        assert await drain(session_factory, jobs, SUBSCRIPTIONS) >= 1
        queued = {job.job_id for job in await jobs.queued_jobs(queue_name="payment")}
        assert f"{placed.id}:payment.capture" in queued
        assert await drain(session_factory, jobs, SUBSCRIPTIONS) == 0, "published once"
    finally:
        await jobs.aclose()
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    assert placed.published_at is not None

    worker = await run_burst("payment")  # a real arq worker takes the job
    assert worker.jobs_complete >= 1
    async with session_factory() as session:
        payment = await payment_for_order(session, order_id)
    assert payment is not None and payment.status == PaymentStatus.captured


async def test_a_batch_enqueues_each_job_once_and_refuses_ids_arq_still_holds(
    session_factory: Factory, sandbox_url: str
) -> None:
    """The relay hands a whole batch over in one script; arq's rule still holds: a job
    whose key (queued) or kept result exists is not enqueued again under its id."""
    from arq.constants import result_key_prefix

    from app.platform.relay import Subscriber, enqueue_many, wake_key

    jobs = await create_job_pool(get_settings())
    queue = f"bench-test-{free_port()}"
    try:
        subscriber = Subscriber(queue, "payment.capture")
        args = [{"id": f"00000000-0000-0000-0000-00000000000{i}", "type": "T"} for i in (1, 2)]
        assert await enqueue_many(jobs, [(arg, subscriber) for arg in args]) == 2
        assert await enqueue_many(jobs, [(arg, subscriber) for arg in args]) == 0
        assert await jobs.llen(wake_key(queue)) == 2, "a wake-up token per job enqueued"  # type: ignore[misc]
        queued = await jobs.queued_jobs(queue_name=queue)
        assert sorted(job.job_id for job in queued) == sorted(
            f"{arg['id']}:payment.capture" for arg in args
        )
        assert sorted(job.args[0]["id"] for job in queued) == [arg["id"] for arg in args]
        assert all(job.function == "payment.capture" for job in queued)
        kept = {"id": "00000000-0000-0000-0000-000000000003", "type": "T"}
        await jobs.set(result_key_prefix + f"{kept['id']}:payment.capture", b"done")
        assert await enqueue_many(jobs, [(kept, subscriber)]) == 0
    finally:
        await jobs.delete(queue, wake_key(queue))
        await jobs.aclose()


async def test_a_batch_is_marked_published_and_only_events_nobody_takes_finished(
    session_factory: Factory, sandbox_url: str
) -> None:
    """One statement claims and marks the batch: every row published, an event with
    subscribers left unfinished until their inbox rows are there, one without finished,
    and the jobs handed over in commit order."""
    customer = uuid.uuid4()
    order_id = await place(session_factory, customer_id=customer)
    failure = OrderPaymentFailed(
        order_id=order_id,
        customer_id=customer,
        status="payment_failed",
        amount=0,
        currency="KRW",
        reason="card declined",
        version=2,
    )
    # recorded where the routes are not known (an older release): left to the relay,
    # where a process that knows them writes it published and finished at once
    unrouted = create_session_factory(session_factory.kw["bind"])
    async with uow.transaction(unrouted) as session:
        record_event(
            session,
            failure,
            aggregate_id=order_id,
            correlation_id=order_id,
        )
    jobs = await create_job_pool(get_settings())
    try:
        assert await drain(session_factory, jobs, SUBSCRIPTIONS) >= 2
        queued = {job.job_id for job in await jobs.queued_jobs(queue_name="payment")}
    finally:
        await jobs.aclose()
    placed, failed = await events_of(session_factory, order_id)
    assert (placed.type, failed.type) == ("OrderPlaced", "OrderPaymentFailed")
    assert placed.published_at is not None and placed.finished_at is None
    assert f"{placed.id}:payment.capture" in queued
    assert failed.published_at is not None and failed.finished_at is not None, "nobody takes it"
