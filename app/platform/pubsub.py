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
from redis.asyncio.client import PubSub

from app.platform.db import utcnow
from app.platform.redis import RedisSilent, answered_within

log = logging.getLogger(__name__)

RESYNC = "__resync__"
#: the process is going away: end the stream, the browser reconnects to another replica
RECONNECT = "__reconnect__"
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0
PATTERNS = ("order:*", "customer:*", "board")
#: PINGs in a row left unanswered before the listener gives its connection up
MISSED_PONGS = 2


def publisher(redis: Redis) -> Callable[[Sequence[tuple[str, str]]], Awaitable[None]]:
    """Publish ``(channel, message)`` pairs in one round trip (a change tells the order's,
    the customer's and the board's pages at once)."""

    async def publish(told: Sequence[tuple[str, str]]) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for channel, message in told:
                pipe.publish(channel, message)
            await pipe.execute()

    return publish


class Mailbox:
    """What one live stream has been told since it last looked: a bounded list and the
    stream's one waiter. (An ``asyncio.Queue`` per stream held four deques, about 3 KB:
    with thousands of idle streams per process that was a tenth of their memory.)"""

    __slots__ = ("_items", "_limit", "_waiter")

    def __init__(self, limit: int = 100) -> None:
        self._items: list[str] = []
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: str) -> None:
        """Tell the stream; dropped when it already holds ``limit`` unread notifications
        (it re-reads its view on the next one anyway)."""
        if len(self._items) < self._limit:
            self._items.append(item)
            self._wake()

    def force(self, item: str) -> None:
        """Tell the stream even when full: the oldest notification makes room."""
        if len(self._items) >= self._limit:
            del self._items[0]
        self._items.append(item)
        self._wake()

    async def take(self) -> list[str]:
        """Everything told so far, oldest first; waits for the first."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items = self._items, []
        return items

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Broadcaster:
    """One pattern subscription per web process, kept alive for ever.

    ``answer_within`` (``REDIS_TIMEOUT_SECONDS``): after twice that without a message the
    listener sends a PING, and when two in a row get nothing back within it the
    connection counts as lost. Without the check a Redis that hangs leaves every live
    page silently stale while ``/health`` still says the listener is fine."""

    def __init__(self, redis: Redis, answer_within: float) -> None:
        self._redis = redis
        self._answer_within = answer_within
        self._clients: dict[str, set[Mailbox]] = defaultdict(set)
        #: notifications handed to clients so far, on any channel (see ``shared_read``)
        self.delivered = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._backoff = BACKOFF_START
        #: when the subscription's connection last sent anything (event loop clock)
        self._heard = 0.0
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
    async def listen(self, channel: str) -> AsyncIterator[Mailbox]:
        mailbox = Mailbox()
        if self._closing:
            mailbox.put(RECONNECT)
        self._clients[channel].add(mailbox)
        try:
            yield mailbox
        finally:
            self._clients[channel].discard(mailbox)
            if not self._clients[channel]:
                del self._clients[channel]

    def close_streams(self) -> None:
        """Tell every live stream (and any that opens from now on) to end with a
        reconnect hint: this process stops accepting."""
        self._closing = True
        for channel in list(self._clients):
            for mailbox in list(self._clients.get(channel, ())):
                mailbox.force(RECONNECT)

    def _deliver(self, channel: str, data: str) -> None:
        self.delivered += 1
        for mailbox in list(self._clients.get(channel, ())):
            mailbox.put(data)

    async def _pump(self) -> None:
        """Listen for ever: after a lost connection, reconnect with backoff (0.2 s doubling
        to 5 s)."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await self._subscribe(pubsub)
                    await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                first = self.state != "reconnecting"
                self._set("reconnecting", f"{type(exc).__name__}: {exc}"[:200])
                if first:
                    self.reconnects += 1
                    log.warning("pubsub: %s; reconnecting", self.error)
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Connect and send the subscription, within ``answer_within`` (the confirmation
        comes with the messages, see ``_hand_on``)."""
        async with answered_within(self._answer_within):
            await pubsub.psubscribe(*PATTERNS)

    async def _listen(self, pubsub: PubSub) -> None:
        """Hand notifications on while a watch checks the connection; whichever ends
        first (a lost connection, or silence) ends both, with its error.

        The watch is a task of its own rather than a timeout on each read: a timer per
        message costs about 30 µs of CPU, on thousands of notifications a second."""
        self._heard = asyncio.get_running_loop().time()
        parts = [
            asyncio.create_task(self._hand_on(pubsub)),
            asyncio.create_task(self._watch(pubsub)),
        ]
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for part in parts:
                part.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
        for part in done:
            part.result()

    async def _hand_on(self, pubsub: PubSub) -> None:
        clock = asyncio.get_running_loop().time
        async for message in pubsub.listen():
            self._heard = clock()
            if message["type"] in {"pmessage", "message"}:
                self._deliver(str(message["channel"]), str(message["data"]))
            elif message["type"] == "psubscribe" and message["data"] == len(PATTERNS):
                self._subscribed()

    async def _watch(self, pubsub: PubSub) -> None:
        """Once the connection has been quiet for twice ``answer_within``, ask for a
        PONG; raise ``RedisSilent`` when ``MISSED_PONGS`` PINGs in a row got nothing at all
        back within ``answer_within`` (one late answer on a busy machine is no outage)."""
        clock = asyncio.get_running_loop().time
        quiet_after, missed = 2 * self._answer_within, 0
        while True:
            quiet = clock() - self._heard
            if quiet < quiet_after:
                missed = 0
                await asyncio.sleep(quiet_after - quiet)
                continue
            asked = clock()
            await pubsub.ping()
            await asyncio.sleep(self._answer_within)
            if self._heard >= asked:
                continue
            missed += 1
            if missed >= MISSED_PONGS:
                raise RedisSilent(f"no answer from Redis for {clock() - self._heard:.1f} s")

    def _subscribed(self) -> None:
        """Every pattern is confirmed: from now on nothing is missed, so every client
        re-reads what changed while the listener was away."""
        if self.state == "reconnecting":
            log.info("pubsub: reconnected")
        self._set("ok")
        self._backoff = BACKOFF_START
        self._resync_all()

    def _resync_all(self) -> None:
        for channel in list(self._clients):
            self._deliver(channel, RESYNC)
