"""Redis clients by role, each on its own URL if set (all default to ``REDIS_URL``):

- queues (``REDIS_QUEUE_URL``): the arq pool; jobs are serialized as JSON rather than
  arq's default pickle, so a job in Redis is data, never code;
- pub/sub (``REDIS_PUBSUB_URL``): live updates (``create_redis``);
- state (``REDIS_STATE_URL``): sessions, rate limits and circuit breakers
  (``create_state_redis``). This role may be a Redis Cluster (``REDIS_STATE_CLUSTER=1``):
  every multi-key script and pipeline of it keeps its keys in one slot (hash tags) or
  runs key by key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, cast

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import ConnectionPool, Redis, RedisCluster

from app.platform.settings import Settings


class RedisSilent(ConnectionError):
    """A connection to Redis neither answered nor closed in time: a partition or a stopped
    server, which TCP alone reports only after many minutes."""


#: a poll, a job's finish, a relay's enqueue: each of their round trips is answered within
#: ``REDIS_TIMEOUT_SECONDS`` by a Redis that works; silence for this many is an outage
BOUND_ROUND_TRIPS = 3


def redis_bound(settings: Settings) -> float:
    """The silence a worker or the relay waits out before it reports Redis gone
    (``answered_within``)."""
    return BOUND_ROUND_TRIPS * settings.redis.timeout_seconds


@contextlib.asynccontextmanager
async def answered_within(seconds: float | None) -> AsyncIterator[asyncio.Timeout | None]:
    """Bound a few commands on a client without a per-command timeout (arq's pools: a
    worker's wake-up BLPOP must block longer than any, and a timer costs each command
    ≈ 30 µs): a Redis that hangs (a partition, a server stopped in its tracks) neither
    answers nor closes the connection, and TCP alone gives up only after many minutes.
    One timer for the lot, raising ``RedisSilent``; a caller that makes many round trips
    (a poll claims up to a hundred jobs) restarts it after each answer (``heard``), so a
    Redis that answers slowly but surely is no outage. ``None``: no bound."""
    if seconds is None:
        yield None
        return
    timer = asyncio.timeout(seconds)
    try:
        async with timer:
            yield timer
    except TimeoutError as exc:
        if timer.expired():  # not some other TimeoutError from inside
            raise RedisSilent(f"no answer within {seconds:g} s") from exc
        raise


def heard(timer: asyncio.Timeout | None, seconds: float) -> None:
    """Redis answered: the silence ``answered_within`` bounds starts again."""
    if timer is not None and not timer.expired():
        timer.reschedule(asyncio.get_running_loop().time() + seconds)


def dumps_job(obj: Any) -> bytes:
    return json.dumps(obj, default=str).encode()


def loads_job(raw: bytes) -> Any:
    return json.loads(raw)


def create_redis(settings: Settings, url: str | None = None, *, bounded: bool = True) -> Redis:
    """A plain client for commands: the pub/sub role unless ``url`` says otherwise.

    ``bounded``: every command fails after ``REDIS_TIMEOUT_SECONDS`` (redis'
    ``TimeoutError``, a ``RedisError``: a 503 for a request) rather than wait for ever on a
    Redis that hangs. A worker passes False: arq's job timeout already ends a job stuck on
    Redis, and the timer costs each command ≈ 30 µs of CPU (half a ``GET``'s own). So does
    a live-update listener: its connection waits for the next message as long as none
    comes (with a timeout, every quiet spell would end in a reconnect); it checks a quiet
    connection with a PING of its own (``Broadcaster``)."""
    timeout = settings.redis.timeout_seconds if bounded else None
    client: Redis = Redis.from_url(
        url or settings.redis.pubsub_url,
        decode_responses=True,
        health_check_interval=30,
        socket_timeout=timeout,
        socket_connect_timeout=settings.redis.timeout_seconds,
    )
    return client


def create_state_redis(settings: Settings, *, bounded: bool = True) -> Redis:
    """The client for sessions, rate limits and breakers: a cluster client when
    ``REDIS_STATE_CLUSTER`` is set. Typed as ``Redis``: the commands this role uses
    (strings, hashes, lists, scripts, non-transactional pipelines) exist on both.
    ``bounded`` as for ``create_redis``."""
    if settings.redis.state_cluster:
        cluster = RedisCluster.from_url(
            settings.redis.state_url,
            decode_responses=True,
            # a timeout is not tried again node by node (each try its own timeout); what
            # is left of a cluster that hangs is a RedisClusterException: a 503 as well
            cluster_error_retry_attempts=1,
            socket_timeout=settings.redis.timeout_seconds if bounded else None,
            socket_connect_timeout=settings.redis.timeout_seconds,
        )
        return cast(Redis, cluster)
    return create_redis(settings, settings.redis.state_url, bounded=bounded)


def arq_redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings.from_dsn(settings.redis.queue_url)


def create_job_client(settings: Settings) -> ArqRedis:
    """arq's client for enqueuing from a process that is no relay (a worker handing over a
    follow-up: ``app.platform.uow.FollowUp``); it connects on first use."""
    # bounded: the web awaits its enqueue after the placement committed, and a Redis that
    # hangs must not hang the customer's answer (the reconciler hands the job over)
    timeout = settings.redis.timeout_seconds
    pool = ConnectionPool.from_url(
        settings.redis.queue_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    return ArqRedis(pool, job_serializer=dumps_job, job_deserializer=loads_job)


async def create_job_pool(settings: Settings, *, retries: int = 5) -> ArqRedis:
    redis_settings = arq_redis_settings(settings)
    redis_settings.conn_retries = retries
    return await create_pool(redis_settings, job_serializer=dumps_job, job_deserializer=loads_job)
