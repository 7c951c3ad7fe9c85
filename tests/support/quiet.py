"""Positive signals from the event pipeline of a running shop, for tests that must show
that something did NOT happen: first wait until it could have, then look."""

from __future__ import annotations

import asyncio

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
