"""Positive signals from the event pipeline of a running shop, for tests that must show
that something did NOT happen: first wait until it could have, then look."""

from __future__ import annotations

import asyncio

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis


async def wait_for_queued_job(redis_url: str, queue: str, task: str, timeout: float = 15) -> str:
    """The id of a ``task`` job waiting in ``queue`` (its worker is stopped): the event has
    reached the subscriber, who has not handled it."""
    redis = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                for job_id in await redis.zrange(queue, 0, -1):
                    if job_id.decode().endswith(f":{task}"):
                        return str(job_id.decode())
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


async def wait_for_job_taken(redis_url: str, queue: str, job_id: str, timeout: float = 60) -> None:
    """Wait until job ``job_id`` has left ``queue`` (a worker took it and finished it or is
    retrying it later). The ceiling is for a worker process that was just started: on a
    loaded two-core machine its imports and start-up alone take seconds."""
    redis = Redis.from_url(redis_url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            score = await redis.zscore(queue, job_id)
            if score is None or score > timestamp_ms():  # gone, or deferred to a retry
                return
            await asyncio.sleep(0.1)
        waiting = [j.decode() for j in await redis.zrange(queue, 0, -1)]
        taken = await redis.exists(in_progress_key_prefix + job_id)
        raise AssertionError(
            f"no {queue} worker took job {job_id} in {timeout}s; in progress: {bool(taken)}; "
            f"queued: {waiting}"
        )
    finally:
        await redis.aclose()
