"""The outbox relay: turns committed outbox rows into one arq job per subscriber.

It drains rows in commit order with ``FOR UPDATE SKIP LOCKED`` (so replicas never hand out
the same row twice at once), is woken by ``LISTEN outbox`` and polls slowly as a safety
net. When Redis is unreachable the transaction rolls back and the rows simply wait.
A job id of ``{event_id}:{task}`` makes a re-enqueue after a crash a no-op in arq, and
handlers are idempotent through the inbox for whatever slips past that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.db import utcnow
from app.platform.outbox import NOTIFY_CHANNEL, OutboxRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscriber:
    queue: str
    task: str


Subscriptions = Mapping[str, Sequence[Subscriber]]


async def relay_batch(
    session_factory: async_sessionmaker[AsyncSession],
    jobs: ArqRedis,
    subscriptions: Subscriptions,
    *,
    limit: int = 200,
) -> int:
    """Publish up to ``limit`` unpublished events; return how many were published."""
    async with session_factory() as session, session.begin():
        rows = (
            await session.scalars(
                select(OutboxRow)
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.seq)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            arg = row.to_event().to_job_arg()
            for sub in subscriptions.get(row.type, ()):
                await jobs.enqueue_job(
                    sub.task, arg, _job_id=f"{row.id}:{sub.task}", _queue_name=sub.queue
                )
            row.published_at = utcnow()
        return len(rows)


async def drain(
    session_factory: async_sessionmaker[AsyncSession],
    jobs: ArqRedis,
    subscriptions: Subscriptions,
    stop: asyncio.Event | None = None,
) -> int:
    """Publish batches until none is left, or until ``stop`` is set: a shutdown ends the
    relay between two batches, never inside one (a batch is one transaction)."""
    total = 0
    while not (stop and stop.is_set()):
        published = await relay_batch(session_factory, jobs, subscriptions)
        if not published:
            break
        total += published
    return total


async def run_relay(
    session_factory: async_sessionmaker[AsyncSession],
    jobs: ArqRedis,
    subscriptions: Subscriptions,
    dsn: str,
    stop: asyncio.Event,
    *,
    poll_seconds: float = 2.0,
) -> None:
    """Relay until ``stop`` is set, surviving PostgreSQL and Redis outages."""
    wake = asyncio.Event()
    listener: asyncpg.Connection | None = None
    backoff = 0.2
    while not stop.is_set():
        try:
            if listener is None or listener.is_closed():
                listener = await asyncpg.connect(dsn)
                await listener.add_listener(NOTIFY_CHANNEL, lambda *_: wake.set())
            wake.clear()
            await drain(session_factory, jobs, subscriptions, stop)
            backoff = 0.2
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(wake, stop), timeout=poll_seconds)
        except Exception as exc:
            log.warning("relay: %s; retrying in %.1fs", exc, backoff)
            if listener is not None and not listener.is_closed():
                listener.terminate()
            listener = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, 5.0)
    if listener is not None and not listener.is_closed():
        await listener.close()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
