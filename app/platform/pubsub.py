"""Fan-out of Redis notifications to the SSE clients of one web process.

Workers ``PUBLISH`` a tiny notification (``order:<id>``, ``customer:<id>``, ``board``);
each web process holds ONE pattern subscription and hands the message to the queues of
its connected clients, who then re-read the read model. After a Redis hiccup every client
is told to resync, so a lost message never leaves a page stale. When the process stops
accepting (graceful shutdown), every client is told to reconnect elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from redis.asyncio import Redis

from app.platform.db import utcnow

log = logging.getLogger(__name__)

RESYNC = "__resync__"
#: the process is going away: end the stream, the browser reconnects to another replica
RECONNECT = "__reconnect__"
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0
PATTERNS = ("order:*", "customer:*", "board")


def publisher(redis: Redis) -> Callable[[Sequence[tuple[str, str]]], Awaitable[None]]:
    """Publish ``(channel, message)`` pairs in one round trip (a change tells the order's,
    the customer's and the board's pages at once)."""

    async def publish(told: Sequence[tuple[str, str]]) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for channel, message in told:
                pipe.publish(channel, message)
            await pipe.execute()

    return publish


class Broadcaster:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._clients: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        #: notifications handed to clients so far, on any channel (see ``shared_read``)
        self.delivered = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
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
        if self._closing:
            queue.put_nowait(RECONNECT)
        self._clients[channel].add(queue)
        try:
            yield queue
        finally:
            self._clients[channel].discard(queue)
            if not self._clients[channel]:
                del self._clients[channel]

    def close_streams(self) -> None:
        """Tell every live stream (and any that opens from now on) to end with a
        reconnect hint: this process stops accepting."""
        self._closing = True
        for channel in list(self._clients):
            for queue in list(self._clients.get(channel, ())):
                _force(queue, RECONNECT)

    def _deliver(self, channel: str, data: str) -> None:
        self.delivered += 1
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


def _force(queue: asyncio.Queue[str], item: str) -> None:
    """Put ``item`` even into a full queue (the oldest notification makes room: a
    reconnect re-reads the view anyway)."""
    with contextlib.suppress(asyncio.QueueEmpty):
        if queue.full():
            queue.get_nowait()
    queue.put_nowait(item)
