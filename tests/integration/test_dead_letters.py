"""Poison messages (issue 9, defect 4): permanent failures are parked as dead letters with
their event and error, counted in health, listed and retried from the command line; the
transient ones are retried. And the reconciler's replicas never take the same event."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.operations.health import event_backlog
from app.payment.models import PaymentStatus
from app.payment.service import payment_for_order
from app.platform import deadletters
from app.platform.db import utcnow
from app.platform.errors import Conflict, IllegalTransition
from app.platform.handlers import run_job
from app.platform.outbox import DeadLetter, InboxRow, OutboxRow
from app.platform.reconciler import reconcile_batch
from app.platform.redis import create_job_pool
from app.platform.relay import drain
from app.platform.settings import get_settings
from app.subscriptions import SUBSCRIPTIONS
from tests.support.env import ROOT
from tests.support.inproc import events_of, place, run_burst

Factory = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.timeout(300)  # real workers and CLI processes on a busy machine


@pytest.fixture
async def jobs(migrated_db: str) -> AsyncIterator[ArqRedis]:
    pool = await create_job_pool(get_settings())
    yield pool
    await pool.aclose()


def _event(type: str = "TestHappened") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": type,
        "aggregate_type": "test",
        "aggregate_id": "1",
        "correlation_id": str(uuid.uuid4()),
        "causation_id": None,
        "occurred_at": utcnow().isoformat(),
        "payload": {},
    }


async def _letter(factory: Factory, handler: str, event_id: str) -> DeadLetter | None:
    async with factory() as session:
        return await session.scalar(
            select(DeadLetter).where(
                DeadLetter.handler == handler, DeadLetter.event_id == uuid.UUID(event_id)
            )
        )


async def _run(ctx: dict[str, Any], handler: str, error: BaseException, job_try: int) -> Any:
    async def task(ctx: dict[str, Any], raw: dict[str, Any]) -> None:
        raise error

    raw = _event()
    result = await run_job(
        {**ctx, "job_try": job_try}, handler=handler, queue="test", task=task, raw=raw, timeout=5
    )
    return result, raw


async def test_an_illegal_transition_is_parked_at_once(
    ctx: dict[str, Any], session_factory: Factory
) -> None:
    result, raw = await _run(ctx, "test.illegal", IllegalTransition("cannot go"), job_try=1)
    assert result == "dead-lettered"
    letter = await _letter(session_factory, "test.illegal", raw["id"])
    assert letter is not None and letter.error == "cannot go" and letter.attempts == 1
    assert letter.error_type.endswith("IllegalTransition") and letter.event == raw
    assert "Traceback" in letter.traceback
    async with session_factory() as session:
        assert (await event_backlog(session, get_settings()))["deadLetters"] >= 1


async def test_a_transient_failure_is_retried_not_parked(
    ctx: dict[str, Any], session_factory: Factory
) -> None:
    with pytest.raises(Retry):
        await _run(ctx, "test.transient", ConnectionRefusedError("PostgreSQL is away"), 50)


async def test_an_unknown_failure_is_retried_a_few_times_then_parked(
    ctx: dict[str, Any], session_factory: Factory
) -> None:
    with pytest.raises(Retry):
        await _run(ctx, "test.bug", KeyError("orderId"), job_try=1)
    poison_tries = get_settings().pipeline.poison_tries
    result, raw = await _run(ctx, "test.bug", KeyError("orderId"), job_try=poison_tries)
    assert result == "dead-lettered"
    assert await _letter(session_factory, "test.bug", raw["id"]) is not None


async def test_a_job_out_of_time_is_retried(ctx: dict[str, Any]) -> None:
    async def slow(ctx: dict[str, Any], raw: dict[str, Any]) -> None:
        await asyncio.sleep(10)

    with pytest.raises(Retry):
        await run_job(ctx, handler="test.slow", queue="test", task=slow, raw=_event(), timeout=0.1)


async def test_success_is_recorded_in_the_inbox(
    ctx: dict[str, Any], session_factory: Factory
) -> None:
    async def quiet(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
        return "nothing to do"

    raw = _event()
    assert await run_job(ctx, handler="test.ok", queue="t", task=quiet, raw=raw, timeout=5) == (
        "nothing to do"
    )
    async with session_factory() as session:
        assert await session.get(InboxRow, ("test.ok", uuid.UUID(raw["id"]))) is not None


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "events", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


async def test_a_damaged_job_is_parked_by_the_real_worker_and_retried_from_the_cli(
    session_factory: Factory, jobs: ArqRedis, sandbox_url: str
) -> None:
    """The capture job of a real order arrives damaged (no payload): the payment worker
    parks it instead of retrying for hours; after `pizzeria events retry`, which sends the
    envelope as the outbox has it, the card is charged once."""
    order_id = await place(session_factory)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    damaged = placed.to_event().to_job_arg()
    del damaged["payload"]
    async with session_factory() as session, session.begin():  # the relay's part, by hand
        row = await session.get(OutboxRow, placed.seq)
        assert row is not None
        row.published_at = row.enqueued_at = utcnow()
    job_id = f"{placed.id}:payment.capture"
    await jobs.enqueue_job("payment.capture", damaged, _job_id=job_id, _queue_name="payment")

    await run_burst("payment")
    letter = await _letter(session_factory, "payment.capture", str(placed.id))
    assert letter is not None and letter.retried_at is None and letter.attempts == 1
    assert "not an event" in letter.error
    assert await jobs.queued_jobs(queue_name="payment") == [], "parked, not retrying"

    listed = await asyncio.to_thread(_cli, "dead")
    assert f"{letter.id}\t" in listed and "payment.capture" in listed and "BadPayload" in listed

    said = await asyncio.to_thread(_cli, "retry", str(letter.id))
    assert "sent again" in said
    await run_burst("payment")
    async with session_factory() as session:
        payment = await payment_for_order(session, order_id)
        assert payment is not None and payment.status == PaymentStatus.captured
        assert await deadletters.get(session, letter.id) is not None
    letter = await _letter(session_factory, "payment.capture", str(placed.id))
    assert letter is not None and letter.retried_at is not None
    assert (
        "no dead letters" in await asyncio.to_thread(_cli, "dead")
        or str(letter.id) not in (await asyncio.to_thread(_cli, "dead")).split("\t")[0]
    )


async def test_reconciler_replicas_never_take_the_same_event(
    session_factory: Factory, jobs: ArqRedis
) -> None:
    orders = [await place(session_factory) for _ in range(6)]
    await drain(session_factory, jobs, SUBSCRIPTIONS)
    ids = [row.id for order_id in orders for row in await events_of(session_factory, order_id)]
    async with session_factory() as session, session.begin():
        await session.execute(
            update(OutboxRow)
            .where(OutboxRow.id.in_(ids))
            .values(enqueued_at=utcnow() - timedelta(minutes=5))
        )
    first, second = await asyncio.gather(
        *(
            reconcile_batch(session_factory, jobs, SUBSCRIPTIONS, redeliver_after=60, limit=4)
            for _ in range(2)
        )
    )
    assert not set(first.checked) & set(second.checked), "one replica per event"
    assert first.checked and second.checked


async def test_a_letter_that_holds_no_event_is_refused_with_words_not_a_crash(
    session_factory: Factory, jobs: ArqRedis
) -> None:
    """A job whose payload was not an event at all (no outbox row to send instead): a
    retry cannot send it, and says why (it crashed with ``KeyError: 'id'``)."""
    job_id = f"{uuid.uuid4()}:test.junk"
    await deadletters.park(
        session_factory,
        handler="test.junk",
        queue="test",
        raw=["not", "an", "event"],
        job_id=job_id,
        error=ValueError("not an event"),
        attempts=1,
    )
    letter = await _letter(session_factory, "test.junk", job_id.split(":")[0])
    assert letter is not None
    async with session_factory() as session:
        with pytest.raises(Conflict, match="holds no event to send again"):
            await deadletters.retry(session, jobs, letter.id, "a test")
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "events", "retry", str(letter.id)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "holds no event to send again" in refused.stderr


async def test_a_parked_capture_given_up_with_a_reason_lets_its_event_finish(
    session_factory: Factory, jobs: ArqRedis, sandbox_url: str
) -> None:
    """The shop settled an order by hand, so its parked capture is no longer wanted. Given
    up without a reason, the command refuses; with one, the capture counts as handled:
    the reconciler finishes the event instead of waiting on it and sends nothing again,
    the letter keeps when and why, the log says who and why, and neither a retry nor a
    second give-up acts on it again. A new failure of the same job opens it again."""
    order_id = await place(session_factory)
    [placed] = await events_of(session_factory, order_id, "OrderPlaced")
    damaged = placed.to_event().to_job_arg()
    del damaged["payload"]
    async with session_factory() as session, session.begin():
        row = await session.get(OutboxRow, placed.seq)
        assert row is not None
        row.published_at = row.enqueued_at = utcnow()
    await jobs.enqueue_job(
        "payment.capture", damaged, _job_id=f"{placed.id}:payment.capture", _queue_name="payment"
    )
    await run_burst("payment")
    parked = await _letter(session_factory, "payment.capture", str(placed.id))
    assert parked is not None and parked.discarded_at is None

    blank = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "events", "discard", str(parked.id), "--reason", " "],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert blank.returncode == 2 and "Say why" in blank.stderr, blank.stderr
    reason = "Settled by phone: the customer paid cash at the door"
    said = await asyncio.to_thread(_cli, "discard", str(parked.id), "--reason", reason)
    assert f"dead letter {parked.id}: payment.capture for OrderPlaced discarded" in said

    async with session_factory() as session:
        letter = await deadletters.get(session, parked.id)
        assert letter.discarded_at is not None and letter.discard_reason == reason
        assert await session.get(InboxRow, ("payment.capture", placed.id)) is not None
        assert parked.id not in [waiting.id for waiting in await deadletters.active(session)]
        [logged] = [a for a in await deadletters.recent_actions(session) if a.event_id == placed.id]
        assert logged.action == "discarded" and logged.handler == "payment.capture"
        assert "the command line" in logged.detail and reason in logged.detail
        with pytest.raises(Conflict, match="already discarded"):
            await deadletters.retry(session, jobs, parked.id, "a test")
    async with session_factory() as session:
        with pytest.raises(Conflict, match="already discarded"):
            await deadletters.discard(session, parked.id, "once more", "a test")
    listed = await asyncio.to_thread(_cli, "dead", "--all")
    assert "discarded" in listed and reason in listed

    async with session_factory() as session, session.begin():
        await session.execute(
            update(OutboxRow)
            .where(OutboxRow.id == placed.id)
            .values(enqueued_at=utcnow() - timedelta(minutes=5))
        )
    swept = await reconcile_batch(
        session_factory, jobs, SUBSCRIPTIONS, redeliver_after=60, limit=10_000
    )
    assert placed.id in swept.checked
    async with session_factory() as session:
        row = await session.get(OutboxRow, placed.seq)
        assert row is not None and row.finished_at is not None, "the event is finished"
    queued = [job.job_id for job in await jobs.queued_jobs(queue_name="payment")]
    assert f"{placed.id}:payment.capture" not in queued, "nothing sent again"

    await deadletters.park(
        session_factory,
        handler="payment.capture",
        queue="payment",
        raw=damaged,
        job_id=f"{placed.id}:payment.capture",
        error=ValueError("not an event"),
        attempts=1,
    )
    again = await _letter(session_factory, "payment.capture", str(placed.id))
    assert again is not None and again.discarded_at is None and again.discard_reason is None
    assert again.failures == 2
