"""The reconciler: PostgreSQL decides when an event is done, not Redis.

An event is *finished* when every subscriber has its inbox row. Redis may lose a job (a
restart without persistence, a flush, a worker killed at the wrong moment); so every few
seconds the reconciler takes the published-but-unfinished events whose jobs were last
enqueued more than ``EVENT_REDELIVER_SECONDS`` ago (or, for a follow-up that the process
recording the event was to run itself, ``EVENT_FOLLOW_UP_SECONDS``: that process died
first) and enqueues the missing jobs again,
with the same job id: while Redis still holds a job (queued, retrying, running) arq
refuses the copy, so nothing doubles; when Redis lost it, it runs again (handlers are
idempotent). A subscriber whose job is parked as a dead letter is left alone.

Replicas never double work: each batch takes its rows ``FOR UPDATE SKIP LOCKED`` and moves
their ``enqueued_at`` forward before committing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from arq.connections import ArqRedis
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.db import utcnow
from app.platform.heartbeat import Heartbeat
from app.platform.logs import OutageNotice
from app.platform.outbox import WAITING, DeadLetter, InboxRow, OutboxRow, PipelineAction
from app.platform.redis import answered_within
from app.platform.relay import Subscriptions, enqueue

log = logging.getLogger("pizzeria.reconciler")


@dataclass
class Pass:
    """What one reconciler pass saw and did."""

    checked: list[uuid.UUID] = field(default_factory=list)
    finished: int = 0
    requeued: int = 0
    still_queued: int = 0
    parked: int = 0

    def add(self, other: Pass) -> None:
        self.checked += other.checked
        self.finished += other.finished
        self.requeued += other.requeued
        self.still_queued += other.still_queued
        self.parked += other.parked


def overdue(
    now: datetime, redeliver_after: float, follow_up_after: float | None, limit: int
) -> Select[OutboxRow]:
    """Up to ``limit`` published, unfinished events whose jobs are overdue: enqueued more
    than ``redeliver_after`` seconds ago, or naming a follow-up its recording process has
    not done within ``follow_up_after``. Locked, skipping those another pass holds."""
    late = OutboxRow.enqueued_at < now - timedelta(seconds=redeliver_after)
    if follow_up_after is not None:
        not_followed_up = OutboxRow.enqueued_at < now - timedelta(seconds=follow_up_after)
        late = or_(late, and_(OutboxRow.follow_ups.is_not(None), not_followed_up))
    return (
        select(OutboxRow)
        .where(OutboxRow.published_at.is_not(None), OutboxRow.finished_at.is_(None), late)
        .order_by(OutboxRow.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def reconcile_batch(
    session_factory: async_sessionmaker[AsyncSession],
    jobs: ArqRedis,
    subscriptions: Subscriptions,
    *,
    redeliver_after: float,
    follow_up_after: float | None = None,
    limit: int = 200,
    redis_within: float | None = None,
) -> Pass:
    """Finish or re-enqueue up to ``limit`` events whose jobs are overdue (each enqueue
    bounded by ``redis_within``, as the relay's)."""
    result = Pass()
    now = utcnow()
    async with session_factory() as session, session.begin():
        rows = (await session.scalars(overdue(now, redeliver_after, follow_up_after, limit))).all()
        if not rows:
            return result
        ids = [row.id for row in rows]
        inbox = await session.execute(
            select(InboxRow.handler, InboxRow.event_id).where(InboxRow.event_id.in_(ids))
        )
        done = {(handler, event_id) for handler, event_id in inbox}
        letters = await session.execute(
            select(DeadLetter.handler, DeadLetter.event_id).where(
                DeadLetter.event_id.in_(ids), WAITING
            )
        )
        parked = {(handler, event_id) for handler, event_id in letters}
        for row in rows:
            result.checked.append(row.id)
            subscribers = subscriptions.get(row.type, ())
            waiting = [s for s in subscribers if (s.task, row.id) not in done]
            missing = [s for s in waiting if (s.task, row.id) not in parked]
            if not waiting:
                row.finished_at = now
                result.finished += 1
                continue
            row.enqueued_at = now
            followed_up, row.follow_ups = row.follow_ups or [], None  # from now on, jobs
            result.parked += len(waiting) - len(missing)
            arg = row.to_event().to_job_arg()
            for sub in missing:
                async with answered_within(redis_within):
                    enqueued = await enqueue(jobs, arg, sub)
                if enqueued:
                    result.requeued += 1
                    lost = (
                        "not followed up by the process that recorded it"
                        if sub.task in followed_up
                        else "no longer in Redis"
                    )
                    log.warning("re-enqueued %s for %s %s: %s", sub.task, row.type, row.id, lost)
                    session.add(
                        PipelineAction(
                            at=now,
                            action="re-enqueued",
                            event_id=row.id,
                            handler=sub.task,
                            detail=f"{row.type} (order {row.correlation_id}) on queue "
                            f"{sub.queue}: not done and {lost}",
                        )
                    )
                else:
                    result.still_queued += 1
    return result


async def reconcile(
    session_factory: async_sessionmaker[AsyncSession],
    jobs: ArqRedis,
    subscriptions: Subscriptions,
    *,
    redeliver_after: float,
    follow_up_after: float | None = None,
    redis_within: float | None = None,
) -> Pass:
    """One full pass: batches until nothing overdue is left."""
    total = Pass()
    while True:
        batch = await reconcile_batch(
            session_factory,
            jobs,
            subscriptions,
            redeliver_after=redeliver_after,
            follow_up_after=follow_up_after,
            redis_within=redis_within,
        )
        total.add(batch)
        if len(batch.checked) < 200:
            return total


async def run_reconciler(
    session_factory: async_sessionmaker[AsyncSession],
    jobs: ArqRedis,
    subscriptions: Subscriptions,
    stop: asyncio.Event,
    *,
    every: float,
    redeliver_after: float,
    follow_up_after: float | None = None,
    heartbeat: Heartbeat | None = None,
    redis_within: float | None = None,
) -> None:
    """Reconcile every ``every`` seconds until ``stop`` is set, through any outage (said
    once, not at every pass)."""
    notice = OutageNotice(log, "reconciler: passes fail", "reconciler: passes complete again")
    while not stop.is_set():
        try:
            done = await reconcile(
                session_factory,
                jobs,
                subscriptions,
                redeliver_after=redeliver_after,
                follow_up_after=follow_up_after,
                redis_within=redis_within,
            )
            if heartbeat:
                heartbeat.detail["reconciler"] = {
                    "at": utcnow().isoformat(),
                    "checked": len(done.checked),
                    "finished": done.finished,
                    "requeued": done.requeued,
                    "parked": done.parked,
                }
            notice.worked()
        except Exception as exc:
            notice.failed(exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
