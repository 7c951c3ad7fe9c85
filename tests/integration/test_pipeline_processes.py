"""The event pipeline with real processes against a Redis the test owns (issue 9):
workers that outlive Redis, a reconciler that re-delivers what Redis lost, and a killed
worker's job retried within seconds."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.delivery.models import Delivery
from app.platform.outbox import InboxRow, OutboxRow, PipelineAction
from app.status.models import BoardCard
from tests.support.api import staff_headers
from tests.support.inproc import place
from tests.support.pipeline import Pipeline, beats, eventually, payment_status
from tests.support.processes import free_port, wait_http

Factory = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.timeout(300)


async def _published(factory: Factory, order_id: uuid.UUID) -> OutboxRow | None:
    async with factory() as session:
        row = await session.scalar(
            select(OutboxRow).where(
                OutboxRow.correlation_id == str(order_id), OutboxRow.type == "OrderPlaced"
            )
        )
    return row if row is not None and row.published_at is not None else None


async def _captured(factory: Factory, order_id: uuid.UUID) -> bool:
    return await payment_status(factory, order_id) == "captured"


async def _state(factory: Factory, kind: str, state: str) -> bool:
    return any(beat.state == state for beat in await beats(factory, kind))


async def test_a_worker_survives_a_redis_restart_and_processes_jobs_after(
    fresh: Pipeline, factory: Factory
) -> None:
    fresh.start("relay")
    worker = fresh.start("worker", "payment")
    first = await place(factory)
    await eventually(lambda: _captured(factory, first), "the first order charged")
    await eventually(lambda: _state(factory, "worker:payment", "ok"), "the worker reporting ok")

    fresh.redis.stop()
    await eventually(
        lambda: _state(factory, "worker:payment", "redis_down"), "the worker reporting Redis down"
    )
    assert worker.poll() is None, "the worker must outlive Redis"
    fresh.redis.start()  # empty: the restart lost everything

    await eventually(lambda: _state(factory, "worker:payment", "ok"), "the worker reconnected")
    second = await place(factory)
    await eventually(lambda: _captured(factory, second), "an order charged after the restart")
    assert worker.poll() is None


async def test_jobs_lost_with_redis_are_delivered_again_within_a_minute(
    fresh: Pipeline, factory: Factory
) -> None:
    """The relay handed the job to Redis, then Redis restarted empty before any worker
    took it: PostgreSQL still knows the event is not finished, and the reconciler (default
    settings) sends it again."""
    fresh.start("relay")
    order_id = await place(factory)
    placed = await eventually(lambda: _published(factory, order_id), "OrderPlaced handed to Redis")
    job_id = f"{placed.id}:payment.capture"
    async with aioredis.Redis.from_url(fresh.redis.url) as client:
        assert await client.exists(f"arq:job:{job_id}")
    fresh.redis.restart()
    fresh.start("worker", "payment")

    await eventually(lambda: _captured(factory, order_id), "the lost job run", timeout=60)
    async with factory() as session:
        actions = list(
            await session.scalars(
                select(PipelineAction).where(PipelineAction.event_id == placed.id)
            )
        )
    assert [(a.action, a.handler) for a in actions] == [("re-enqueued", "payment.capture")]

    async def finished() -> bool:
        async with factory() as session:
            row = await session.get(OutboxRow, placed.seq)
            return row is not None and row.finished_at is not None

    await eventually(finished, "the event marked finished")


async def test_a_killed_workers_job_is_retried_within_seconds(
    fresh: Pipeline, factory: Factory
) -> None:
    """The charge takes 2.5 s at the partner; the worker is SIGKILLed in the middle. The
    job is still in Redis (its in-progress lease too), so the reconciler would not help:
    the lease must be short (a few seconds, renewed while a job runs) instead of arq's
    (the job's limit plus ten seconds)."""
    order_id = await place(factory)  # its card is tokenized at the partner before it slows
    async with httpx.AsyncClient(base_url=fresh.sandbox_url) as sandbox:
        await sandbox.put("/sandbox/knobs/payment", json={"latencyMs": 2500})
    try:
        slow = {"PARTNER_TIMEOUT": "5", "EVENT_REDELIVER_SECONDS": "600"}
        fresh.start("relay", **slow)
        worker = fresh.start("worker", "payment", **slow)
        placed = await eventually(lambda: _published(factory, order_id), "OrderPlaced relayed")
        async with aioredis.Redis.from_url(fresh.redis.url) as client:

            async def running() -> bool:
                return bool(await client.exists(f"arq:in-progress:{placed.id}:payment.capture"))

            await eventually(running, "the charge in progress")
        fresh.kill(worker)
        fresh.start("worker", "payment", **slow)
        await eventually(lambda: _captured(factory, order_id), "the orphaned job", timeout=60)
    finally:
        async with httpx.AsyncClient(base_url=fresh.sandbox_url) as sandbox:
            await sandbox.put("/sandbox/knobs/payment", json={"latencyMs": 0})


async def _delivery_of(factory: Factory, order_id: uuid.UUID) -> Delivery | None:
    async with factory() as session:
        return await session.scalar(select(Delivery).where(Delivery.order_id == order_id))


async def test_the_payment_worker_alone_makes_the_paid_orders_delivery(
    fresh: Pipeline, factory: Factory
) -> None:
    """No delivery worker runs: the paid order still gets its ticket and its rider, made
    by the payment worker right after the capture (``EVENT_FOLLOW_UPS``, on by default),
    and the delivery job is never needed."""
    fresh.start("relay")
    fresh.start("worker", "payment")
    order_id = await place(factory)
    delivery = await eventually(lambda: _delivery_of(factory, order_id), "a delivery")
    assert delivery.partner_ref, "the rider asked for"
    async with factory() as session:
        handlers = set(
            await session.scalars(
                select(InboxRow.handler)
                .join(OutboxRow, OutboxRow.id == InboxRow.event_id)
                .where(OutboxRow.correlation_id == str(order_id), OutboxRow.type == "OrderPaid")
            )
        )
    assert handlers == {"delivery.create"}


async def _board_status(factory: Factory, delivery_id: uuid.UUID) -> str | None:
    async with factory() as session:
        card = await session.get(BoardCard, delivery_id)
        return card.status if card is not None else None


async def test_a_staff_move_committed_while_redis_is_down_answers_success_and_catches_up(
    fresh: Pipeline, factory: Factory
) -> None:
    """The move commits (with its outbox row and its board card); publishing it live
    needs Redis, which is down. The answer is 200, not a 503 that invites a second move;
    the board's read model has the move at once, and the web's pub/sub listener
    reconnects once Redis is back (a page re-reads its view when its stream does)."""
    port = free_port()
    web = fresh.start("serve", "--port", str(port))
    for part in ("relay", "payment", "ordering", "delivery"):
        fresh.start(*(("relay",) if part == "relay" else ("worker", part)))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
        wait_http(f"http://127.0.0.1:{port}/health/ready", web, timeout=120)
        staff = await staff_headers(client, fresh.env)
        order_id = await place(factory)
        delivery = await eventually(lambda: _delivery_of(factory, order_id), "a delivery")
        assert delivery.status == "queued"

        async def pubsub(state: str) -> bool:
            health = (await client.get("/health")).json()
            return bool(health["web"]["pubsub"]["state"] == state)

        await eventually(lambda: pubsub("ok"), "the web listening")
        fresh.redis.stop()
        moved = await client.post(f"/api/deliveries/{delivery.id}/advance", headers=staff)
        assert moved.status_code == 200, moved.text
        assert moved.json()["status"] == "preparing"
        after = await _delivery_of(factory, order_id)
        assert after is not None and after.status == "preparing", "moved exactly once"
        assert await _board_status(factory, delivery.id) == "preparing", "projected at commit"
        await eventually(lambda: pubsub("reconnecting"), "health saying pub/sub is down")

        fresh.redis.start()
        await eventually(lambda: pubsub("ok"), "the web listening again")
