"""What every job gets from its worker: the typed ``ctx``.

arq hands each job a dict, ``ctx``. A worker's start-up fills it in one place
(``workers.context``); the tests that call handlers directly build it with the same
functions; handlers read it through these types, so a missing or misspelt key is a type
error, not a ``KeyError`` in production. Contexts that call a partner extend it with
their clients (``app.payment.tasks.PaymentContext``, ``app.delivery.tasks.CourierContext``).
"""

# no ``from __future__ import annotations``: TypedDict must see ``NotRequired`` at runtime
from typing import NotRequired, TypedDict

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.settings import Settings


class WorkerContext(TypedDict):
    settings: Settings
    session_factory: async_sessionmaker[AsyncSession]
    #: pub/sub: the projector tells live pages here
    redis: Redis
    #: breakers (and sessions, rate limits): a cluster client when configured
    state_redis: Redis
    #: arq's: this job's try (1 on the first) and id, set while a job runs
    job_try: NotRequired[int]
    job_id: NotRequired[str]
