"""The unit of work: how every change that records events ends.

A use case (web) or an event handler (worker) changes aggregates and records their
events in one session; the unit of work ends it: ``complete`` for a session the caller
opened, ``transaction`` for one it opens. The composition installs the read side on the
session factory (``read_your_writes``): the events recorded are folded into the read
models in the same transaction, so the order page a customer is redirected to, or the
replay of a double-clicked order, never finds the view missing, and no status job has to
project them later (a hop of the pipeline saved per event: see
``app.status.projector``); then the transaction commits, and
only then are live pages told (Redis, one round trip), best effort: the change has
happened, so the answer is success whatever happens there, and a page that missed the
notification re-reads its view when its stream reconnects.

Before the read side, the *reactions* run (``react_in_transaction``): another context's
handler that only changes the database, run in the transaction that records the event
(the order paid with its payment's capture), instead of a job after a relay round trip.
Each claims its inbox row under the name of its job, so the relay hands the event to
that job only where no reaction ran (a process of an older release, a session without
them) and the reconciler counts it done. Given the subscriptions too, the unit of work
knows when an event leaves the relay nothing to do (every subscriber reacted or follows
up, or it has none): its outbox row is written as published, so the relay is not woken
for it (``app.platform.outbox.write_recorded``).

A job may also ready another context's reaction outside any transaction, before it
records the event that reaction follows (``Prepared``: the payment worker books the
paid order's rider right after the charge), and hand it to its unit of work
(``react_here``): the reaction then runs in the recording transaction like those the
factory installed, and the same subscriber's follow-up is not run after the commit.

After the commit and the live pages, the *follow-ups* run (``follow_up_after_commit``):
another context's job that a process can run itself right after the commit that records
its event (the paid order's delivery, made by the payment worker that captured it),
instead of waiting for the relay to hand it to its queue. The outbox row names them, so
the relay leaves them out; a follow-up that cannot finish is handed to its queue at once,
and one whose process died first is handed over by the reconciler
(``EVENT_FOLLOW_UP_SECONDS``).

A session that recorded events may not commit any other way (``_unprojected_events``):
an event the status worker no longer projects would otherwise be lost for the views.
Controllers never commit; they call a use case, and the use case ends here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.platform import metrics
from app.platform.driver import write_added
from app.platform.events import Event
from app.platform.outbox import RECORDED, claim_recorded, take_recorded, write_recorded
from app.platform.relay import Subscriber, Subscriptions

#: fold the events one transaction recorded, in order, into the read models in that
#: transaction; the ``(channel, event type)`` pairs to tell after it commits
Project = Callable[[AsyncSession, Sequence[Event]], Awaitable[list[tuple[str, str]]]]
#: tell live pages, after the commit, what happened on each channel: ``(channel, event
#: types)`` pairs, the types comma-separated, one pair per channel and transaction, all
#: in one round trip (``app.platform.pubsub.publisher``)
Publish = Callable[[Sequence[tuple[str, str]]], Awaitable[Any]]
PROJECT, PUBLISH, REACT, FOLLOW = "uow.project", "uow.publish", "uow.react", "uow.follow"
ROUTES = "uow.routes"
#: ``session.info``: the reactions of the unit of work now running only (``react_here``),
#: and the (handler, event id) pairs its reactions claimed
REACT_HERE, REACTED = "uow.react_here", "uow.reacted"
#: ``session.info``: what the unit of work runs once its reactions ran, before the commit
BEFORE_COMMIT = "uow.before_commit"


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


@dataclass(frozen=True)
class Prepared:
    """What a subscriber readied outside any transaction (a partner asked, under a key
    of its own) for an event a job is about to record, so that it reacts in the very
    transaction that records the event (``react_here``) instead of following up after
    its commit: a transaction, a projection and a publish fewer.

    ``undo`` is called after the commit: it gives back what was readied when the event
    was not recorded after all (the order was cancelled meanwhile), and keeps it when
    its reaction ran or the event was recorded by another transaction (a copy of the
    job, whose subscriber then finds the same thing under the same key). It answers True
    when it gave something back, and raises when it could not (the job is retried).
    """

    reactions: Reactions
    undo: Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class FollowUp:
    """A subscriber's job that the process recording its event runs itself, right after
    the commit: a relay hop and a job fewer, and sooner.

    ``run`` is the job's work for the event, bound to this process's clients; it answers
    True when its inbox row is committed, False (or raises) when the job should do it
    after all (a partner away, a case only the job knows): it is then handed to
    ``subscriber``'s queue at once. Without ``run``, the job is handed over at once: the
    process has nothing of the work to do, but its enqueue right after the commit saves
    the relay's wake-up, claim and enqueue (the web handing a placed order to the
    payment worker)."""

    subscriber: Subscriber
    run: Callable[[Event], Awaitable[bool]] | None = None


#: follow-ups by the wire name of the event they follow
FollowUps = Mapping[str, Sequence[FollowUp]]
#: enqueue an event's job on a subscriber's queue (``app.platform.relay.enqueue``)
HandOver = Callable[[dict[str, Any], Subscriber], Awaitable[object]]
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
    session_factory: async_sessionmaker[AsyncSession],
    reactions: Reactions,
    subscriptions: Subscriptions | None = None,
) -> None:
    """Every unit of work run on a session of ``session_factory`` runs ``reactions`` to
    the events it recorded, before the read side and the commit; with ``subscriptions``
    (the relay's routes), it writes an event none of whose subscribers is left for the
    relay as already published."""
    _install(session_factory, {REACT: reactions, ROUTES: subscriptions})


def follow_up_after_commit(
    session_factory: async_sessionmaker[AsyncSession], follow_ups: FollowUps, hand_over: HandOver
) -> None:
    """Every unit of work run on a session of ``session_factory`` runs ``follow_ups`` to
    the events it recorded after it commits; ``hand_over`` gives one its job instead."""
    _install(session_factory, {FOLLOW: (follow_ups, hand_over)})


def react_here(session: AsyncSession, reactions: Reactions) -> None:
    """``reactions`` for the unit of work about to end on ``session`` only, besides those
    its factory installed (``react_in_transaction``). A follow-up of the same subscriber
    to the same event is then not run after the commit: its reaction did the work."""
    here: dict[str, list[Reaction]] = session.info.setdefault(REACT_HERE, {})
    for kind, more in reactions.items():
        here[kind] = [*here.get(kind, ()), *more]


def reacted_here(session: AsyncSession, reactions: Reactions) -> bool:
    """Whether any of ``reactions`` ran in the unit of work of ``session`` (known once its
    reactions ran: from a ``before_commit`` step)."""
    handlers = {r.handler for more in reactions.values() for r in more}
    reacted: set[tuple[str, uuid.UUID]] = session.info.get(REACTED) or set()
    return any(handler in handlers for handler, _ in reacted)


def before_commit(session: AsyncSession, step: Callable[[AsyncSession], Awaitable[None]]) -> None:
    """Run ``step`` in the unit of work of ``session`` after its reactions and before
    its commit: for a decision that depends on what they did (``reacted_here``)."""
    session.info.setdefault(BEFORE_COMMIT, []).append(step)


def _install(session_factory: async_sessionmaker[AsyncSession], parts: dict[str, Any]) -> None:
    """Add ``parts`` to the ``info`` every session of ``session_factory`` starts with."""
    session_factory.configure(info={**(session_factory.kw.get("info") or {}), **parts})


async def complete(session: AsyncSession) -> list[Event]:
    """Project what the use case recorded, commit, then tell live pages. Returns the
    events it recorded."""
    events, told = await _project_recorded(session)
    await write_added(session, commit_follows=True)
    await session.commit()
    await _tell(session, events, told)
    await _follow_up(session, events)
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
            await write_added(session, commit_follows=True)
        await _tell(session, events, told)
        await _follow_up(session, events)


async def _project_recorded(session: AsyncSession) -> tuple[list[Event], list[tuple[str, str]]]:
    """Take the events the session recorded, with what the reactions to them recorded,
    and fold them into the read models (when a read side is installed); the ``(channel,
    event type)`` pairs to tell after commit."""
    here: Reactions = session.info.pop(REACT_HERE, None) or {}
    events = await _react(session, here)
    for step in session.info.pop(BEFORE_COMMIT, None) or ():
        await step(session)
    project: Project | None = session.info.get(PROJECT)
    told = await project(session, events) if project is not None and events else []
    # the inbox and outbox rows last: added after the projection's reads, they go in one
    # statement with its view saves, just before the commit (``Statement.add``)
    claim_recorded(session, session.info[REACTED])
    followed = _followed(session)
    write_recorded(session, events, followed, _settled(session, events, followed, here))
    return events, once_per_channel(told)


def once_per_channel(told: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """One message per channel for the whole transaction, naming its event types in
    order: a page re-reads its view once whatever it is told, so a capture that pays the
    order, makes its delivery and asks for the rider tells the order's page once, not
    four times (each a publish, and a message for every web process's listener)."""
    kinds: dict[str, dict[str, None]] = {}  # dicts as ordered sets
    for channel, kind in told:
        kinds.setdefault(channel, {})[kind] = None
    return [(channel, ",".join(seen)) for channel, seen in kinds.items()]


async def _react(session: AsyncSession, here: Reactions) -> list[Event]:
    """Run the reactions (installed, and this unit of work's own) to what the session
    recorded, and to what they record, until nothing new is recorded; every event, in
    the order recorded."""
    reactions: Reactions = session.info.get(REACT) or {}
    reacted: set[tuple[str, uuid.UUID]] = set()
    session.info[REACTED] = reacted
    events: list[Event] = []
    while recorded := take_recorded(session):
        events += recorded
        for event in recorded:
            for reaction in (*reactions.get(event.type, ()), *here.get(event.type, ())):
                await reaction.effect(session, event)
                reacted.add((reaction.handler, event.id))
    # recorded in this transaction, no one else can have claimed them: all their inbox
    # rows are added with the effects they stand for (``_project_recorded``)
    return events


def _followed(session: AsyncSession) -> dict[str, list[str]]:
    """The subscribers this session's process follows up, by event type: for the outbox."""
    installed: tuple[FollowUps, HandOver] | None = session.info.get(FOLLOW)
    if installed is None:
        return {}
    return {kind: [f.subscriber.task for f in runs] for kind, runs in installed[0].items()}


def _settled(
    session: AsyncSession, events: list[Event], followed: dict[str, list[str]], here: Reactions
) -> set[str]:
    """The types among ``events`` that leave the relay nothing to hand over: each of
    their subscribers reacted in this transaction or is followed up after it. Without
    the routes installed, none (the relay decides, as it always may)."""
    routes: Subscriptions | None = session.info.get(ROUTES)
    if routes is None:
        return set()
    reactions: Reactions = session.info.get(REACT) or {}
    settled = set()
    for kind in {event.type for event in events}:
        reacting = (*reactions.get(kind, ()), *here.get(kind, ()))
        done = {r.handler for r in reacting} | set(followed.get(kind, ()))
        if all(sub.task in done for sub in routes.get(kind, ())):
            settled.add(kind)
    return settled


async def _follow_up(session: AsyncSession, events: list[Event]) -> None:
    installed: tuple[FollowUps, HandOver] | None = session.info.get(FOLLOW)
    if installed is None:
        return
    follow_ups, hand_over = installed
    reacted: set[tuple[str, uuid.UUID]] = session.info.get(REACTED) or set()
    for event in events:
        for follow_up in follow_ups.get(event.type, ()):
            if (follow_up.subscriber.task, event.id) not in reacted:
                await _run_follow_up(follow_up, hand_over, event)


async def _run_follow_up(follow_up: FollowUp, hand_over: HandOver, event: Event) -> None:
    """Run one follow-up; what it did not finish goes to its job, now. Nothing here fails
    the unit of work, which has committed: at worst the reconciler hands it over later."""
    task = follow_up.subscriber.task
    why = None  # no work of its own: handed over at once
    if follow_up.run is not None:
        try:
            if await follow_up.run(event):
                metrics.FOLLOW_UPS.labels(task, "done").inc()
                log.info(
                    "followed up %s for %s %s", task, event.type, event.id, extra=_context(event)
                )
                return
            why = "a case its job handles"
        except Exception as exc:  # arq's Retry included: a partner away, a breaker open
            why = f"{type(exc).__name__}: {exc}"[:300]
    try:
        await hand_over(event.to_job_arg(), follow_up.subscriber)
    except Exception as exc:
        metrics.FOLLOW_UPS.labels(task, "left").inc()
        log.warning(
            "%s for %s %s not done (%s) and not handed over (%s); the reconciler will",
            task,
            event.type,
            event.id,
            why or "to be handed over",
            exc,
            extra=_context(event),
        )
        return
    if why is None:
        metrics.FOLLOW_UPS.labels(task, "enqueued").inc()
        return
    metrics.FOLLOW_UPS.labels(task, "handed_over").inc()
    log.info(
        "%s for %s %s handed to its queue (%s)",
        task,
        event.type,
        event.id,
        why,
        extra=_context(event),
    )


def _context(event: Event) -> dict[str, str]:
    """The log fields that tie a line to its order and event (built only to log)."""
    return {"correlation_id": event.correlation_id, "event_id": str(event.id)}


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
    """Events recorded in a transaction that rolled back never happened, and the
    reactions readied for them go with them."""
    session.info.pop(RECORDED, None)
    session.info.pop(REACT_HERE, None)
    session.info.pop(BEFORE_COMMIT, None)
