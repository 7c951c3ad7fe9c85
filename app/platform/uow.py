"""The unit of work: how every use case ends.

A use case changes aggregates and records their events in one session; ``complete``
ends it. The composition installs the read side on the session factory
(``read_your_writes``): the events the use case recorded are folded into the read
models in the same transaction, so the order page a customer is redirected to, or the
replay of a double-clicked order, never finds the view missing; then the transaction
commits, and only then are live pages told (Redis), best effort: the change has
happened, so the answer is success whatever happens there, and the status worker
publishes the same events from the outbox anyway.

Controllers never commit; they call a use case, and the use case ends here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.events import Event
from app.platform.outbox import take_recorded

#: fold one event into the read models in the caller's transaction; the channels to tell
Project = Callable[[AsyncSession, Event], Awaitable[list[str]]]
#: tell live pages on ``channel`` that an event of a type happened (after the commit)
Publish = Callable[[str, str], Awaitable[Any]]
PROJECT, PUBLISH = "uow.project", "uow.publish"
log = logging.getLogger(__name__)


def read_your_writes(
    session_factory: async_sessionmaker[AsyncSession], project: Project, publish: Publish
) -> None:
    """Every use case run on a session of ``session_factory`` projects what it recorded
    before it commits, and publishes after."""
    info: dict[str, Any] = dict(session_factory.kw.get("info") or {})
    info[PROJECT], info[PUBLISH] = project, publish
    session_factory.configure(info=info)


async def complete(session: AsyncSession) -> list[Event]:
    """Project what the use case recorded, commit, then tell live pages. Returns the
    events it recorded."""
    events = take_recorded(session)
    project: Project | None = session.info.get(PROJECT)
    told: list[tuple[str, str]] = []
    if project is not None:
        for event in events:
            told += [(channel, event.type) for channel in await project(session, event)]
    await session.commit()
    publish: Publish | None = session.info.get(PUBLISH)
    if publish is not None and told:
        try:
            for channel, event_type in dict.fromkeys(told):
                await publish(channel, event_type)
        except Exception as exc:
            log.warning(
                "telling live pages about %s skipped (%s: %s); the status worker will",
                ", ".join(e.type for e in events),
                type(exc).__name__,
                exc,
            )
    return events
