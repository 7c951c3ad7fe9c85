"""What ``/health`` reports: every part of the shop and whether work is moving.

Read from PostgreSQL (process heartbeats, the outbox, dead letters, the watchdog) and
from this web process itself (its pub/sub listener), so it answers while Redis is down
and says so.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.operations import watchdog
from app.platform import deadletters, heartbeat
from app.platform.db import utcnow
from app.platform.outbox import OutboxRow
from app.platform.pubsub import Broadcaster
from app.platform.settings import Settings


async def event_backlog(session: AsyncSession, settings: Settings) -> dict[str, int]:
    """Events not handed to Redis yet, and events overdue: still not finished by every
    subscriber after the reconciler's first look at them (it looks every
    ``RECONCILE_INTERVAL_SECONDS`` for events published ``EVENT_REDELIVER_SECONDS`` ago,
    marks the done ones finished and sends the rest again). Counting from the redeliver
    time alone counted every healthy event between then and that look: a steady 1 to 3 in
    a shop with nothing wrong."""
    pipeline = settings.pipeline
    waited = pipeline.redeliver_seconds + 2 * pipeline.reconcile_seconds
    overdue_before = utcnow() - timedelta(seconds=waited)
    unpublished = await session.scalar(
        select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))
    )
    overdue = await session.scalar(
        select(func.count())
        .select_from(OutboxRow)
        .where(
            OutboxRow.published_at.is_not(None),
            OutboxRow.finished_at.is_(None),
            OutboxRow.published_at < overdue_before,
        )
    )
    return {
        "unpublished": int(unpublished or 0),
        "overdue": int(overdue or 0),
        "deadLetters": await deadletters.count_active(session),
    }


def database_away(broadcaster: Broadcaster, exc: BaseException) -> dict[str, Any]:
    """The report while PostgreSQL cannot be reached: everything else is read from it, so
    this says which part is down and what this process still knows (its listener),
    instead of the bare 503 every other page gives then."""
    return {
        "status": "degraded",
        "database": {"state": "unreachable", "error": f"{type(exc).__name__}: {exc}"[:200]},
        "web": _web(broadcaster),
    }


def _web(broadcaster: Broadcaster) -> dict[str, Any]:
    return {
        "pubsub": {
            "state": broadcaster.state,
            "since": broadcaster.since.isoformat(),
            "reconnects": broadcaster.reconnects,
            "error": broadcaster.error,
        }
    }


def parts_gone(processes: list[heartbeat.ProcessState]) -> list[str]:
    """The kinds of process (``worker:payment``) heard from lately with none of them
    beating now: nobody is left to do that part's work. Only the live ones were looked
    at, so a hung payment worker, the only one, left health "ok" while orders waited
    unpaid (operator walk). A process replaced by a new one of its kind (a restart)
    stays listed as gone for an hour, and is no reason to be degraded."""
    beating = {p.kind for p in processes if not p.stale}
    return sorted({p.kind for p in processes if p.stale} - beating)


async def report(
    session: AsyncSession, settings: Settings, broadcaster: Broadcaster
) -> dict[str, Any]:
    processes = await heartbeat.processes(session, settings.pipeline.heartbeat_seconds)
    stalled = await watchdog.stalled(session, settings.pipeline)
    events = await event_backlog(session, settings)
    live = [p for p in processes if not p.stale]
    gone = parts_gone(processes)
    degraded = (
        broadcaster.state != "ok"
        or any(p.state != heartbeat.OK for p in live)
        or bool(gone)
        or events["deadLetters"] > 0
        or bool(stalled.findings)
    )
    return {
        "status": "degraded" if degraded else "ok",
        "database": {"state": "ok", "error": None},
        "web": _web(broadcaster),
        "partsGone": gone,
        "processes": [
            {
                "name": p.name,
                "kind": p.kind,
                "state": "gone" if p.stale else p.state,
                "since": p.since,
                "seenAt": p.seen_at.isoformat(),
                "detail": {k: v for k, v in p.detail.items() if k != "since"},
            }
            for p in processes
        ],
        "events": events,
        "watchdog": stalled.counts(),
    }
