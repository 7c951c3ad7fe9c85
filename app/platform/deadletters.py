"""Dead letters: jobs parked because running them again would fail the same way.

A parked (handler, event) keeps its event unfinished, and the reconciler leaves it alone
until someone fixes the cause and retries it (``pizzeria events retry ID`` or the admin
page), which sends the same job again with the same job id; or discards it, saying why
(``pizzeria events discard ID --reason ...``), when its effect is no longer wanted.
"""

from __future__ import annotations

import traceback as tb
import uuid
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.db import utcnow
from app.platform.errors import Conflict, InvalidInput, NotFound
from app.platform.i18n import N_
from app.platform.outbox import WAITING, DeadLetter, OutboxRow, PipelineAction, claim
from app.platform.relay import Subscriber, enqueue
from app.platform.uow import complete

NIL = uuid.UUID(int=0)


def _event_id(raw: Any, job_id: str) -> uuid.UUID:
    """The event's id, from the payload or else from the job id (``{event_id}:{task}``)."""
    for candidate in (raw.get("id") if isinstance(raw, dict) else None, job_id.split(":")[0]):
        try:
            return uuid.UUID(str(candidate))
        except ValueError:
            continue
    return NIL


async def park(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    handler: str,
    queue: str,
    raw: Any,
    job_id: str,
    error: BaseException,
    attempts: int,
) -> None:
    """Record the failure (a second failure of a retried letter re-opens the same row)."""
    event = raw if isinstance(raw, dict) else {"raw": repr(raw)}
    values = {
        "handler": handler,
        "queue": queue,
        "event_id": _event_id(raw, job_id),
        "event_type": str(event.get("type", "?"))[:100],
        "event": event,
        "error": str(error)[:4000] or type(error).__name__,
        "error_type": f"{type(error).__module__}.{type(error).__qualname__}"[:200],
        "traceback": "".join(tb.format_exception(error))[-8000:],
        "attempts": attempts,
        "failures": 1,
        "failed_at": utcnow(),
        "retried_at": None,
    }
    stmt = insert(DeadLetter).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[DeadLetter.handler, DeadLetter.event_id],
        set_={
            **{k: stmt.excluded[k] for k in ("error", "error_type", "traceback", "attempts")},
            "failed_at": stmt.excluded.failed_at,
            "retried_at": None,
            "discarded_at": None,
            "discard_reason": None,
            "failures": DeadLetter.failures + 1,
        },
    )
    async with session_factory() as session, session.begin():
        await session.execute(stmt)


async def active(session: AsyncSession, limit: int = 500) -> list[DeadLetter]:
    """Dead letters waiting for someone, newest first."""
    rows = await session.scalars(
        select(DeadLetter).where(WAITING).order_by(DeadLetter.failed_at.desc()).limit(limit)
    )
    return list(rows)


async def count_active(session: AsyncSession) -> int:
    return int(
        await session.scalar(select(func.count()).select_from(DeadLetter).where(WAITING)) or 0
    )


async def get(session: AsyncSession, letter_id: int) -> DeadLetter:
    letter = await session.get(DeadLetter, letter_id)
    if letter is None:
        raise NotFound(N_("No dead letter %(id)s.", id=letter_id))
    return letter


async def retry(session: AsyncSession, jobs: ArqRedis, letter_id: int, who: str) -> DeadLetter:
    """Send a parked job again (after the cause was fixed); the reconciler watches it from
    here like any other job. Commits."""
    letter = await _waiting(session, letter_id)
    event = letter.event
    outbox = await session.scalar(select(OutboxRow).where(OutboxRow.id == letter.event_id))
    if outbox is not None:  # the envelope as written, in case the parked copy was damaged
        event = outbox.to_event().to_job_arg()
        outbox.enqueued_at = utcnow()
    elif not isinstance(event, dict) or not isinstance(
        event.get("id"), str
    ):  # a job whose payload was not an event at all
        raise Conflict(
            N_(
                "Dead letter %(id)s holds no event to send again (its job's payload was not "
                "one); whatever sent it must send a real event.",
                id=letter_id,
            )
        )
    await enqueue(jobs, event, Subscriber(letter.queue, letter.handler))
    return await _close(session, letter, "retried", f"sent again by {who}", "retried_at")


#: how long a reason for discarding a job may be
REASON_MAX = 500


async def discard(session: AsyncSession, letter_id: int, reason: str, who: str) -> DeadLetter:
    """Discard a parked job for good, saying why. Its handler counts the event as handled
    (the inbox row, as if the job had run), so the event can finish and nothing sends the
    job again; the letter stays, with when and why, for whoever looks later. For a job
    whose effect is no longer wanted (the order settled by hand), not for one whose cause
    can be fixed: retry that. Commits."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput.single("reason", N_("Say why this job is discarded."))
    if len(reason) > REASON_MAX:
        raise InvalidInput.single(
            "reason", N_("Please keep it under %(n)s characters.", n=REASON_MAX)
        )
    letter = await _waiting(session, letter_id)
    outbox = await session.scalar(select(OutboxRow.id).where(OutboxRow.id == letter.event_id))
    if outbox is not None:  # a payload that was no event has no event to finish
        await claim(session, letter.handler, letter.event_id)
    return await _close(
        session,
        letter,
        "discarded",
        f"discarded by {who}: {reason}",
        "discarded_at",
        discard_reason=reason,
    )


async def _waiting(session: AsyncSession, letter_id: int) -> DeadLetter:
    """The letter, locked; one already sent again or discarded is not someone's to act on
    twice."""
    letter = await session.get(DeadLetter, letter_id, with_for_update=True)
    if letter is None:
        raise NotFound(N_("No dead letter %(id)s.", id=letter_id))
    if letter.retried_at is not None:
        raise Conflict(N_("Dead letter %(id)s was already retried.", id=letter.id))
    if letter.discarded_at is not None:
        raise Conflict(N_("Dead letter %(id)s was already discarded.", id=letter.id))
    return letter


async def _close(
    session: AsyncSession,
    letter: DeadLetter,
    action: str,
    what: str,
    stamp: str,
    **values: Any,
) -> DeadLetter:
    """Take the letter off the waiting list (``stamp``, its time column, set now, with
    ``values``) and say so in the pipeline's log, in one commit."""
    now = utcnow()
    await session.execute(
        update(DeadLetter).where(DeadLetter.id == letter.id).values({stamp: now, **values})
    )
    session.add(
        PipelineAction(
            at=now,
            action=action,
            event_id=letter.event_id,
            handler=letter.handler,
            detail=f"dead letter {letter.id} ({letter.event_type}) {what}",
        )
    )
    await complete(session)
    await session.refresh(letter)
    return letter


async def recent_actions(session: AsyncSession, limit: int = 50) -> list[PipelineAction]:
    rows = await session.scalars(
        select(PipelineAction).order_by(PipelineAction.id.desc()).limit(limit)
    )
    return list(rows)
