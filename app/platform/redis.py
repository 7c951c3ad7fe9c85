"""Redis clients: the plain client (sessions, pub/sub, breakers) and the arq pool (jobs).

Jobs are serialized as JSON rather than arq's default pickle, so a job in Redis is data,
never code.
"""

from __future__ import annotations

import json
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis

from app.platform.settings import Settings


def dumps_job(obj: Any) -> bytes:
    return json.dumps(obj, default=str).encode()


def loads_job(raw: bytes) -> Any:
    return json.loads(raw)


def create_redis(settings: Settings) -> Redis:
    client: Redis = Redis.from_url(
        settings.redis.url, decode_responses=True, health_check_interval=30
    )
    return client


def arq_redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings.from_dsn(settings.redis.url)


async def create_job_pool(settings: Settings, *, retries: int = 5) -> ArqRedis:
    redis_settings = arq_redis_settings(settings)
    redis_settings.conn_retries = retries
    return await create_pool(redis_settings, job_serializer=dumps_job, job_deserializer=loads_job)
