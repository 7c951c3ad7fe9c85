"""Rate limits shared by every web process through Redis (fixed windows).

Each limit counts hits per key (an account, a client address) in the current window;
over the limit the caller gets 429 with ``Retry-After`` = the seconds left in the window.
"""

from __future__ import annotations

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


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def hit(self, *checks: tuple[Limit, str]) -> None:
        """Count one hit for each ``(limit, key)`` (one Redis round trip for all); raise 429
        once any window's allowance is spent."""
        now = time.time()
        windows = [int(now // limit.per_seconds) for limit, _ in checks]
        async with self._redis.pipeline(transaction=True) as pipe:
            for (limit, key), window in zip(checks, windows, strict=True):
                # Keys never contain raw emails or addresses.
                digest = hashlib.sha256(key.lower().encode()).hexdigest()[:24]
                redis_key = f"ratelimit:{limit.name}:{digest}:{window}"
                pipe.incr(redis_key)
                pipe.expire(redis_key, limit.per_seconds + 1)
            results = await pipe.execute()
        for (limit, _), window, hits in zip(checks, windows, results[::2], strict=True):
            if int(hits) > limit.max_hits:
                retry_after = max(1, int((window + 1) * limit.per_seconds - now) + 1)
                raise TooManyRequests(
                    N_(
                        "Too many attempts; please try again in %(seconds)s seconds.",
                        seconds=retry_after,
                    ),
                    retry_after,
                )
