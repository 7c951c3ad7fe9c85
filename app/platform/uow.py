"""The unit of work: how every change that records events ends.

A use case (web) or an event handler (worker) changes aggregates and records their
events in one session; the unit of work ends it: ``complete`` for a session the caller
opened, ``transaction`` for one it opens. The composition installs the read side on the
session factory (``read_your_writes``): the events recorded are folded into the read
models in the same transaction, so the order page a customer is redirected to, or the
replay of a double-clicked order, never finds the view missing, and no status job has to
project them later (a hop of the pipeline saved per event: see
``app.status.projector.PROJECTED_WHERE_RECORDED``); then the transaction commits, and
only then are live pages told (Redis, one round trip), best effort: the change has
happened, so the answer is success whatever happens there, and a page that missed the
notification re-reads its view when its stream reconnects.

Before the read side, the *reactions* run (``react_in_transaction``): another context's
handler that only changes the database, run in the transaction that records the event
(the order paid with its payment's capture), instead of a job after a relay round trip.
Each claims its inbox row under the name of its job, so the relay hands the event to
that job only where no reaction ran (a process of an older release, a session without
them) and the reconciler counts it done.

A session that recorded events may not commit any other way (``_unprojected_events``):
an event the status worker no longer projects would otherwise be lost for the views.
Controllers never commit; they call a use case, and the use case ends here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.platform.events import Event
from app.platform.outbox import RECORDED, claim, take_recorded, write_recorded

#: fold the events one transaction recorded, in order, into the read models in that
#: transaction; the ``(channel, event type)`` pairs to tell after it commits
Project = Callable[[AsyncSession, Sequence[Event]], Awaitable[list[tuple[str, str]]]]
#: tell live pages, after the commit, that events of a type happened on each channel
#: (``(channel, event type)`` pairs, in one round trip: ``app.platform.pubsub.publisher``)
Publish = Callable[[Sequence[tuple[str, str]]], Awaitable[Any]]
PROJECT, PUBLISH, REACT = "uow.project", "uow.publish", "uow.react"


@dataclass(frozen=True)
class Reaction:
    """A subscriber's handler run in the transaction that records the event.

    ``handler`` is the name of the subscriber's job (its inbox row): the relay skips a
    subscriber whose row exists. ``effect`` may record events of its own; they are
    reacted to and projected in the same transaction. Only for effects that call no
    partner and that belong with the cause: if one fails, the cause rolls back with it."""

    handler: str
    effect: Callable[[AsyncSession, Event], Awaitable[object]]


#: reactions by the wire name of the event they follow
Reactions = Mapping[str, Sequence[Reaction]]
log = logging.getLogger(__name__)


class EventsNotProjected(RuntimeError):
    """A session committed events without a unit of work: a bug (see the module doc)."""


def read_your_writes(
    session_factory: async_sessionmaker[AsyncSession], project: Project, publish: Publish
) -> None:
    """Every unit of work run on a session of ``session_factory`` projects what it
    recorded before it commits, and publishes after."""
    _install(session_factory, {PROJECT: project, PUBLISH: publish})


def react_in_transaction(
    session_factory: async_sessionmaker[AsyncSession], reactions: Reactions
) -> None:
    """Every unit of work run on a session of ``session_factory`` runs ``reactions`` to
    the events it recorded, before the read side and the commit."""
    _install(session_factory, {REACT: reactions})


def _install(session_factory: async_sessionmaker[AsyncSession], parts: dict[str, Any]) -> None:
    """Add ``parts`` to the ``info`` every session of ``session_factory`` starts with."""
    session_factory.configure(info={**(session_factory.kw.get("info") or {}), **parts})


async def complete(session: AsyncSession) -> list[Event]:
    """Project what the use case recorded, commit, then tell live pages. Returns the
    events it recorded."""
    events, told = await _project_recorded(session)
    await session.commit()
    await _tell(session, events, told)
    return events


@asynccontextmanager
async def transaction(
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """``async with session_factory() as session, session.begin()`` for code that records
    events (the event handlers): what the block recorded is projected in its transaction
    before the commit, and live pages are told after it. An exception rolls it all back."""
    async with session_factory() as session:
        async with session.begin():
            yield session
            events, told = await _project_recorded(session)
        await _tell(session, events, told)


async def _project_recorded(session: AsyncSession) -> tuple[list[Event], list[tuple[str, str]]]:
    """Take the events the session recorded, with what the reactions to them recorded,
    and fold them into the read models (when a read side is installed); the ``(channel,
    event type)`` pairs to tell after commit."""
    events = await _react(session)
    await write_recorded(session, events)
    project: Project | None = session.info.get(PROJECT)
    told = await project(session, events) if project is not None and events else []
    return events, list(dict.fromkeys(told))


async def _react(session: AsyncSession) -> list[Event]:
    """Run the reactions to what the session recorded, and to what they record, until
    nothing new is recorded; every event, in the order recorded."""
    reactions: Reactions = session.info.get(REACT) or {}
    events: list[Event] = []
    while recorded := take_recorded(session):
        events += recorded
        for event in recorded:
            for reaction in reactions.get(event.type, ()):
                # recorded in this transaction: no one else can have claimed it yet
                await claim(session, reaction.handler, event.id)
                await reaction.effect(session, event)
    return events


async def _tell(session: AsyncSession, events: list[Event], told: list[tuple[str, str]]) -> None:
    publish: Publish | None = session.info.get(PUBLISH)
    if publish is None or not told:
        return
    try:
        await publish(told)
    except Exception as exc:
        log.warning(
            "telling live pages about %s skipped (%s: %s); they catch up when they reconnect",
            ", ".join(e.type for e in events),
            type(exc).__name__,
            exc,
        )


@orm_event.listens_for(Session, "before_commit")
def _unprojected_events(session: Session) -> None:
    """Refuse to commit events that no unit of work took: they would be in the outbox
    but, for the events only their recorder projects, never in the read models."""
    recorded: list[Event] = session.info.get(RECORDED) or []
    if recorded:
        raise EventsNotProjected(
            f"{', '.join(e.type for e in recorded)} recorded outside a unit of work: end "
            "the change with app.platform.uow.complete or uow.transaction"
        )


@orm_event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: Any) -> None:
    """Events recorded in a transaction that rolled back never happened."""
    session.info.pop(RECORDED, None)
