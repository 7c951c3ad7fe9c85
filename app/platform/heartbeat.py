"""Process heartbeats: every relay and worker writes its state to PostgreSQL every few
seconds, so ``/health`` can say which parts run and whether they reach Redis, even
while Redis itself is down (the heartbeat does not depend on what it reports on)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.db import utcnow
from app.platform.logs import OutageNotice
from app.platform.outbox import ProcessBeat

log = logging.getLogger(__name__)

#: the states a process reports
OK = "ok"
STARTING = "starting"
REDIS_DOWN = "redis_down"
#: rows of processes gone this long are removed
FORGET_AFTER = timedelta(hours=1)


class Heartbeat:
    """One process's state, written every ``interval`` seconds by :meth:`run`."""

    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], kind: str, interval: float
    ) -> None:
        self.session_factory = session_factory
        self.kind = kind
        self.name = f"{kind}@{socket.gethostname()}:{os.getpid()}"
        self.interval = interval
        self.state = STARTING
        self.since = utcnow()
        self.detail: dict[str, Any] = {}
        self.started_at = utcnow()

    def set(self, state: str, **detail: Any) -> None:
        """Report ``state`` from now on (``since`` moves only when the state changes)."""
        if state != self.state:
            self.state, self.since = state, utcnow()
        self.detail.update(detail)

    async def beat(self) -> None:
        now = utcnow()
        detail = {**self.detail, "since": self.since.isoformat()}
        values = {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "detail": detail,
            "started_at": self.started_at,
            "seen_at": now,
        }
        async with self.session_factory() as session, session.begin():
            await session.execute(
                insert(ProcessBeat)
                .values(**values)
                .on_conflict_do_update(index_elements=[ProcessBeat.name], set_=values)
            )
            await session.execute(
                delete(ProcessBeat).where(ProcessBeat.seen_at < now - FORGET_AFTER)
            )

    async def run(self) -> None:
        """Beat until cancelled; a PostgreSQL outage only makes the row go stale, and is
        said once in this process's log (a worker that cannot reach the database does no
        work, and its log is where an operator looks first)."""
        notice = OutageNotice(
            log,
            f"heartbeat of {self.name}: PostgreSQL cannot be written",
            f"heartbeat of {self.name}: PostgreSQL written again",
        )
        while True:
            try:
                await self.beat()
                notice.worked()
            except Exception as exc:
                notice.failed(exc)
            await asyncio.sleep(self.interval)

    async def remove(self) -> None:
        """A clean stop: the process leaves the list rather than going stale."""
        with contextlib.suppress(Exception):
            async with self.session_factory() as session, session.begin():
                await session.execute(delete(ProcessBeat).where(ProcessBeat.name == self.name))


@dataclass(frozen=True)
class ProcessState:
    name: str
    kind: str
    state: str
    since: str | None
    seen_at: datetime
    stale: bool
    detail: dict[str, Any]


async def processes(session: AsyncSession, interval: float) -> list[ProcessState]:
    """Every process heard from in the last hour; ``stale`` when it missed three beats."""
    now = utcnow()
    rows = await session.scalars(select(ProcessBeat).order_by(ProcessBeat.kind, ProcessBeat.name))
    return [
        ProcessState(
            name=row.name,
            kind=row.kind,
            state=row.state,
            since=row.detail.get("since"),
            seen_at=row.seen_at,
            stale=row.seen_at < now - timedelta(seconds=3 * interval + 2),
            detail=row.detail,
        )
        for row in rows
    ]
