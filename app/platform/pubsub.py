"""Fan-out of Redis notifications to the SSE clients of one web process.

Workers ``PUBLISH`` a tiny notification (``order:<id>``, ``customer:<id>``, ``board``);
each web process holds ONE pattern subscription and hands the message to the queues of
its connected clients, who then re-read the read model. After a Redis hiccup every client
is told to resync, so a lost message never leaves a page stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from app.platform.db import utcnow

log = logging.getLogger(__name__)

RESYNC = "__resync__"
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0
PATTERNS = ("order:*", "customer:*", "board")


class Broadcaster:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._clients: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        #: for ``/health``: "connecting", "ok" or "reconnecting", since when, how often
        self.state = "connecting"
        self.since = utcnow()
        self.reconnects = 0
        self.error: str | None = None

    def _set(self, state: str, error: str | None = None) -> None:
        if state != self.state:
            self.state, self.since = state, utcnow()
        self.error = error

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
        self._clients[channel].add(queue)
        try:
            yield queue
        finally:
            self._clients[channel].discard(queue)
            if not self._clients[channel]:
                del self._clients[channel]

    def _deliver(self, channel: str, data: str) -> None:
        for queue in list(self._clients.get(channel, ())):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(data)

    async def _pump(self) -> None:
        """Listen for ever: after a lost connection, reconnect with backoff (0.2 s doubling
        to 5 s) and tell every client to resync."""
        backoff = BACKOFF_START
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(*PATTERNS)
                    if self.state == "reconnecting":
                        log.info("pubsub: reconnected")
                    self._set("ok")
                    backoff = BACKOFF_START
                    self._resync_all()
                    async for message in pubsub.listen():
                        if message["type"] in {"pmessage", "message"}:
                            self._deliver(str(message["channel"]), str(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.state != "reconnecting":
                    self.reconnects += 1
                    log.warning("pubsub: %s; reconnecting", exc)
                self._set("reconnecting", f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _resync_all(self) -> None:
        for channel in list(self._clients):
            self._deliver(channel, RESYNC)
