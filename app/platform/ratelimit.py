"""Rate limits shared by every web process through Redis (fixed windows).

Each limit counts hits per key (an account, a client address) in the current window;
over the limit the caller gets 429 with ``Retry-After`` = the seconds left in the window.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from app.platform.errors import DomainError
from app.platform.i18n import N_


class TooManyRequests(DomainError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    per_seconds: int


#: one counter, bumped and given its lifetime atomically (one key: cluster-safe)
_BUMP = """
local hits = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return hits
"""


def _redis_key(limit: Limit, key: str, window: int) -> str:
    # Keys never contain raw emails or addresses.
    digest = hashlib.sha256(key.lower().encode()).hexdigest()[:24]
    return f"ratelimit:{limit.name}:{digest}:{window}"


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def count(self, limit: Limit, key: str) -> None:
        """Count one event (a failed sign-in, say) without refusing anything. The count
        lasts until ``limit.per_seconds`` pass without another event (no window edge
        for an attacker to wait for)."""
        redis_key = _redis_key(limit, key, 0)
        await self._redis.eval(_BUMP, 1, redis_key, str(limit.per_seconds))  # type: ignore[misc]

    async def back_off(self, limit: Limit, key: str, step: float, ceiling: float) -> float:
        """Slow down (never refuse) once ``count`` went over ``limit`` for ``key``: each
        extra event adds ``step`` seconds of delay, up to ``ceiling``. A delay cannot be
        turned into a lock: every request still gets its answer. Returns the delay."""
        redis_key = _redis_key(limit, key, 0)
        excess = int(await self._redis.get(redis_key) or 0) - limit.max_hits
        delay = min(ceiling, excess * step) if excess > 0 else 0.0
        if delay > 0:
            await asyncio.sleep(delay)
        return delay

    async def hit(self, *checks: tuple[Limit, str]) -> None:
        """Count one hit for each ``(limit, key)`` (one Redis round trip for all); raise 429
        once any window's allowance is spent."""
        now = time.time()
        windows = [int(now // limit.per_seconds) for limit, _ in checks]
        # each key on its own (its own slot in a cluster), all in one round trip
        async with self._redis.pipeline(transaction=False) as pipe:
            for (limit, key), window in zip(checks, windows, strict=True):
                pipe.eval(_BUMP, 1, _redis_key(limit, key, window), str(limit.per_seconds + 1))
            results = await pipe.execute()
        for (limit, _), window, hits in zip(checks, windows, results, strict=True):
            if int(hits) > limit.max_hits:
                retry_after = max(1, int((window + 1) * limit.per_seconds - now) + 1)
                raise TooManyRequests(_try_again_in(retry_after), retry_after)


def _try_again_in(seconds: int) -> str:
    """The wait in words ("in a second", not "in 1 seconds")."""
    if seconds == 1:
        return N_("Too many attempts; please try again in a second.")
    return N_("Too many attempts; please try again in %(seconds)s seconds.", seconds=seconds)
