"""Which job failures are worth a retry (transient), which never are (permanent), and
which we cannot tell (unknown: a few retries, then a dead letter)."""

from __future__ import annotations

import asyncpg
import httpx
import msgspec
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from app.platform.errors import IllegalTransition, NotFound, Unavailable
from app.platform.failures import BadPayload, Failure, classify


def _wrapped(error: Exception) -> DBAPIError:
    """How SQLAlchemy hands us an asyncpg error."""
    return OperationalError("SELECT 1", {}, error)


def _pg(cls: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    return cls("from the server")


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("refused"),
        ConnectionResetError("reset"),
        TimeoutError(),
        RedisConnectionError("Redis restarted"),
        httpx.ConnectTimeout("slow partner"),
        Unavailable("breaker open", retry_after=3),
        _wrapped(_pg(asyncpg.exceptions.CannotConnectNowError)),  # 57P03: starting up
        _wrapped(_pg(asyncpg.exceptions.AdminShutdownError)),  # 57P01: restarted
        _wrapped(_pg(asyncpg.exceptions.DeadlockDetectedError)),  # 40P01
        _wrapped(_pg(asyncpg.exceptions.SerializationError)),  # 40001
        _wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("gone")),
    ],
)
def test_transient(error: Exception) -> None:
    assert classify(error) is Failure.transient


@pytest.mark.parametrize(
    "error",
    [
        IllegalTransition("delivery cannot go from delivered to baking"),
        NotFound("order not found"),
        BadPayload("not an event"),
        msgspec.ValidationError("Object missing required field `payload`"),
        _wrapped(_pg(asyncpg.exceptions.UndefinedColumnError)),  # 42703: a bug
        _wrapped(_pg(asyncpg.exceptions.InvalidTextRepresentationError)),  # 22P02
    ],
)
def test_permanent(error: Exception) -> None:
    assert classify(error) is Failure.permanent


@pytest.mark.parametrize(
    "error",
    [
        KeyError("orderId"),
        AttributeError("'NoneType' object has no attribute 'status'"),
        ValueError("badly formed hexadecimal UUID string"),
        IntegrityError("INSERT", {}, _pg(asyncpg.exceptions.UniqueViolationError)),  # a race?
    ],
)
def test_unknown(error: Exception) -> None:
    assert classify(error) is Failure.unknown


def test_the_cause_decides_when_ours_wraps_it() -> None:
    outer = RuntimeError("publishing failed")
    outer.__cause__ = RedisConnectionError("reset by peer")
    assert classify(outer) is Failure.transient
