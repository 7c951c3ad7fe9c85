"""Helpers for event handlers running as arq jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq import Retry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.breaker import BreakerOpen, CircuitBreaker
from app.platform.events import Event
from app.platform.outbox import claim
from app.platform.settings import get_settings

Effect = Callable[[AsyncSession, Event], Awaitable[None]]
T = TypeVar("T")


async def handle_once(
    session_factory: async_sessionmaker[AsyncSession], handler: str, event: Event, effect: Effect
) -> bool:
    """Run ``effect`` in one transaction with the inbox record; False if already handled."""
    async with session_factory() as session, session.begin():
        if not await claim(session, handler, event.id):
            return False
        await effect(session, event)
    return True


def retry_delay(job_try: int) -> float:
    """Exponential backoff for jobs whose partner or data is not ready: 0.5 s up to
    ``WORKER_RETRY_MAX_SECONDS`` (30 s by default)."""
    ceiling = get_settings().worker.retry_max_seconds
    return float(min(0.5 * 2 ** max(job_try - 1, 0), ceiling))


def event_of(raw: dict[str, Any]) -> Event:
    return Event.from_job_arg(raw)


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
