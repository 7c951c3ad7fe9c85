"""Telling a job's transient failures from permanent ones.

Transient: the network, PostgreSQL or Redis being away, a lock or serialization conflict,
a timeout — running the job again later will work, so it is retried with backoff.
Permanent: a payload that does not parse, an illegal state transition, any other domain
error — running it again gives the same answer, so it is parked as a dead letter.
Anything else (a bug: ``KeyError``, ``AttributeError`` …) is "unknown": retried a few
times (``WORKER_POISON_TRIES``) in case it was a race, then parked too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from enum import StrEnum

import httpx
import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.platform.errors import DomainError, Unavailable


class Failure(StrEnum):
    transient = "transient"
    permanent = "permanent"
    unknown = "unknown"


#: SQLSTATE classes worth a retry: connection (08), transaction rollback such as
#: deadlock or serialization (40), resources (53), operator intervention such as a
#: restart (57), system error (58); and "lock not available".
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57", "58", "55P03")
#: SQLSTATE classes that will fail the same way again: data (22), integrity (23) when
#: it is not a race, and syntax/undefined objects (42: a bug or a missing migration).
_PERMANENT_SQLSTATES = ("22", "42")

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, refused, reset, TimeoutError
    asyncio.TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
    httpx.TransportError,
    PoolTimeout,
    DisconnectionError,
    Unavailable,
)
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    msgspec.ValidationError,
    msgspec.DecodeError,
    DomainError,  # IllegalTransition, NotFound, InvalidInput, Conflict …
)


class BadPayload(Exception):
    """The job's argument is not an event we can read: permanent."""


def classify(exc: BaseException) -> Failure:
    """What kind of failure ``exc`` is, looking through its causes (SQLAlchemy wraps
    asyncpg's errors, ours wrap both)."""
    for error in _chain(exc):
        if isinstance(error, BadPayload):
            return Failure.permanent
        state = _sqlstate(error)
        if state is not None:
            if state.startswith(_TRANSIENT_SQLSTATES):
                return Failure.transient
            if state.startswith(_PERMANENT_SQLSTATES):
                return Failure.permanent
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return Failure.transient
        if isinstance(error, Unavailable):
            return Failure.transient
        if isinstance(error, _PERMANENT_TYPES):
            return Failure.permanent
        if isinstance(error, _TRANSIENT_TYPES) or _is_asyncpg_connection_error(error):
            return Failure.transient
    return Failure.unknown


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            yield from _chain(orig)
        current = current.__cause__ or current.__context__


def _sqlstate(error: BaseException) -> str | None:
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return state if isinstance(state, str) else None


def _is_asyncpg_connection_error(error: BaseException) -> bool:
    import asyncpg

    return isinstance(
        error,
        asyncpg.exceptions.InterfaceError
        | asyncpg.exceptions.PostgresConnectionError
        | asyncpg.exceptions.ConnectionDoesNotExistError,
    )
