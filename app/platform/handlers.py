"""Helpers for event handlers running as arq jobs."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import msgspec
from arq import Retry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform import uow
from app.platform.breaker import BreakerOpen, CircuitBreaker
from app.platform.events import Event
from app.platform.failures import BadPayload, Failure, classify
from app.platform.outbox import claim, unclaim
from app.platform.settings import get_settings
from app.platform.worker import WorkerContext

Effect = Callable[[AsyncSession, Event], Awaitable[object]]
T = TypeVar("T")
log = logging.getLogger("pizzeria.worker")

#: (handler, event id) pairs whose inbox row the running job has seen committed: the
#: job's own transaction wrote it (``handle_once``, the projector), or found it there
_claimed: ContextVar[set[tuple[str, uuid.UUID]] | None] = ContextVar("claimed", default=None)


def note_claimed(handler: str, event_id: uuid.UUID) -> None:
    """The inbox row of (``handler``, ``event_id``) is committed: ``run_job`` need not
    write it again in a transaction of its own."""
    claimed = _claimed.get()
    if claimed is not None:
        claimed.add((handler, event_id))


async def handle_once(
    session_factory: async_sessionmaker[AsyncSession], handler: str, event: Event, effect: Effect
) -> bool:
    """Run ``effect`` in one transaction with the inbox record (and the read models'
    share of the events it records: ``app.platform.uow``); False if already handled."""
    ran, _ = await _once(session_factory, handler, event, effect)
    return ran


async def answer_once(
    session_factory: async_sessionmaker[AsyncSession],
    handler: str,
    event: Event,
    effect: Callable[[AsyncSession, Event], Awaitable[T]],
) -> T | None:
    """``handle_once`` for a job that goes on with the effect's answer (what it found
    under a lock, the row it made): the answer, None if the event was already handled
    (by an earlier try or a copy of the job: look it up then)."""
    _, answer = await _once(session_factory, handler, event, effect)
    return answer


async def _once(
    session_factory: async_sessionmaker[AsyncSession],
    handler: str,
    event: Event,
    effect: Callable[[AsyncSession, Event], Awaitable[T]],
) -> tuple[bool, T | None]:
    async with uow.transaction(session_factory) as session:
        if not await claim(session, handler, event.id):
            note_claimed(handler, event.id)  # a duplicate waits for the first to commit
            return False, None
        answer = await effect(session, event)
    if not session.info.pop(_LEFT_UNHANDLED, False):
        note_claimed(handler, event.id)
    return True, answer


#: ``session.info``: ``leave_unhandled`` took the effect's inbox row back
_LEFT_UNHANDLED = "handlers.left_unhandled"


async def leave_unhandled(session: AsyncSession, handler: str, event: Event) -> None:
    """From the effect of ``handle_once``/``answer_once`` (or a ``uow.before_commit``
    step of its unit of work): commit the effect without the event's inbox row, because
    the job has work left after the commit that must not be lost (a charge to give back,
    a rider to release). ``run_job`` writes the row once the job has done it; a job that
    dies first is run again (its retry, or the reconciler's re-enqueue if Redis lost it),
    and finds the effect already recorded."""
    await unclaim(session, handler, event.id)
    session.info[_LEFT_UNHANDLED] = True


def retry_delay(job_try: int) -> float:
    """Exponential backoff for jobs whose partner or data is not ready: 0.5 s up to
    ``WORKER_RETRY_MAX_SECONDS`` (30 s by default)."""
    ceiling = get_settings().worker.retry_max_seconds
    return float(min(0.5 * 2 ** max(job_try - 1, 0), ceiling))


def unknown_failure_delay(job_try: int) -> float:
    """Backoff for a failure we cannot classify: 2, 4, 8, 16 s … (at most a minute),
    whatever ``WORKER_RETRY_MAX_SECONDS`` says, so that a short outage that surfaces as
    an odd exception is outlived before the job is parked (about 30 s with the default
    ``WORKER_POISON_TRIES`` of 5)."""
    return float(min(2.0**job_try, 60.0))


def event_of(raw: dict[str, Any]) -> Event:
    """The event a job carries; a job argument that is no event is a permanent failure."""
    try:
        return Event.from_job_arg(raw)
    except (msgspec.ValidationError, TypeError) as exc:
        raise BadPayload(f"not an event: {exc}") from exc


async def call_partner(
    breaker: CircuitBreaker, call: Callable[[], Awaitable[T]], job_try: int
) -> T:
    """A partner call from a job: through the breaker, and if the breaker refuses or the
    partner is unavailable, the job is retried later (arq ``Retry``), never dropped."""
    try:
        return await breaker.call(call)
    except BreakerOpen as exc:
        raise Retry(defer=max(float(exc.retry_after), retry_delay(job_try))) from exc
    except breaker.failure_exceptions as exc:
        raise Retry(defer=retry_delay(job_try)) from exc


async def run_job(
    ctx: WorkerContext,
    *,
    handler: str,
    queue: str,
    task: Callable[[Any, dict[str, Any]], Awaitable[Any]],
    raw: dict[str, Any],
    timeout: float,  # noqa: ASYNC109 (arq's per-function limit, applied inside)
) -> Any:
    """Run one event handler as an arq job, the way every job runs.

    - It gets ``timeout`` seconds (sized to the partner calls it makes); running out is a
      transient failure, retried.
    - Transient failures are retried with backoff (``Retry``): arq drops a job that raises.
    - Permanent failures, and unknown ones that keep happening, are parked as dead letters
      (with the event and the error) instead of retrying for hours and then vanishing.
    - Success is recorded in the inbox: an event is finished when every subscriber has its
      inbox row, and the reconciler re-enqueues what is not (PostgreSQL decides, not Redis).
    """
    from app.platform import deadletters

    settings = ctx["settings"]
    job_try = ctx.get("job_try", 1)
    claimed: set[tuple[str, uuid.UUID]] = set()
    token = _claimed.set(claimed)
    try:
        async with asyncio.timeout(timeout):
            result = await task(ctx, raw)
    except asyncio.CancelledError:
        raise
    except Retry as exc:
        if job_try < settings.worker.max_tries:
            raise
        error: BaseException = exc
        reason = f"still not done after {job_try} tries"
    except Exception as exc:
        kind = classify(exc)
        if kind is Failure.transient and job_try < settings.worker.max_tries:
            log.warning("%s: %s (try %s); retrying", handler, _describe(exc), job_try)
            raise Retry(defer=retry_delay(job_try)) from exc
        if kind is Failure.unknown and job_try < settings.pipeline.poison_tries:
            log.exception("%s failed (try %s); retrying", handler, job_try)
            raise Retry(defer=unknown_failure_delay(job_try)) from exc
        error, reason = exc, f"{kind} failure"
    else:
        if not _already_claimed(claimed, handler, raw):
            await _or_retry(mark_handled(ctx["session_factory"], handler, raw), job_try)
        return result
    finally:
        _claimed.reset(token)
    log.error("%s: %s: %s; parked as a dead letter", handler, reason, _describe(error))
    await _or_retry(
        deadletters.park(
            ctx["session_factory"],
            handler=handler,
            queue=queue,
            raw=raw,
            job_id=str(ctx.get("job_id", "")),
            error=error,
            attempts=job_try,
        ),
        job_try,
    )
    return "dead-lettered"


def _already_claimed(
    claimed: set[tuple[str, uuid.UUID]], handler: str, raw: dict[str, Any]
) -> bool:
    """Whether the job's own transaction already committed its inbox row: then a second
    transaction just to find it there (one per job, ten per order) is skipped."""
    if not claimed:
        return False
    try:
        return (handler, event_of(raw).id) in claimed
    except BadPayload:
        return False


async def mark_handled(
    session_factory: async_sessionmaker[AsyncSession], handler: str, raw: dict[str, Any]
) -> None:
    """Record that ``handler`` is done with the job's event (the inbox row ``handle_once``
    may already have written in the effect's own transaction)."""
    async with session_factory() as session, session.begin():
        await claim(session, handler, event_of(raw).id)


async def _or_retry(step: Awaitable[None], job_try: int) -> None:
    """Bookkeeping in PostgreSQL after the handler ran; if PostgreSQL is away, the job is
    retried (the handler is idempotent, so running it again is safe)."""
    try:
        await step
    except Exception as exc:
        log.warning("job bookkeeping failed: %s; retrying", _describe(exc))
        raise Retry(defer=retry_delay(job_try)) from exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
