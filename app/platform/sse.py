"""Server-sent events: a stream of notifications on a Redis channel, turned into an SSE
response that proxies keep open and that ends politely when the process stops.

Technical plumbing shared by every live page (the order page, the staff board, a
refund); what a page shows on each notification is the page's own business.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.platform import metrics
from app.platform.pubsub import RECONNECT, Broadcaster, Mailbox

KEEP_ALIVE_SECONDS = 15.0
#: how long a browser waits before reconnecting after a shutdown ends its stream (spread,
#: so a replica's clients don't all land on the next one in the same millisecond)
RECONNECT_MS = (500, 1500)
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Reconnect:
    """An update meaning: end the stream, the client reconnects elsewhere."""


RECONNECTING = Reconnect()


class SharedWork(Generic[K, T]):
    """Work that every stream of this process needs after the same notification (an
    order's view read, the staff board rendered), done once per key instead of once per
    viewer: 200 viewers of a page cost one read and one render per change.

    A caller joins work in flight only if it began after the caller's notification had
    arrived (``woken_at``, the broadcaster's ``delivered`` count then), so what it gets
    reflects that change; otherwise it starts new work, marked with ``now`` (the count
    when it starts). The work runs as its own task: a viewer that leaves cancels nothing.
    """

    def __init__(self) -> None:
        self._running: dict[K, tuple[int, asyncio.Task[T]]] = {}

    async def get(self, key: K, woken_at: int, now: int, make: Callable[[], Awaitable[T]]) -> T:
        current = self._running.get(key)
        if current is None or current[0] < woken_at:
            current = (now, asyncio.ensure_future(make()))
            self._running[key] = current
            current[1].add_done_callback(functools.partial(self._forget, key, current))
        return await asyncio.shield(current[1])

    def _forget(self, key: K, work: tuple[int, asyncio.Task[T]], _: object) -> None:
        if self._running.get(key) is work:
            del self._running[key]


async def next_update(mailbox: Mailbox, keep_alive: float) -> bool | Reconnect | None:
    """Wait for a burst of notifications (coalesced into one re-read): True, None on
    keep-alive, RECONNECTING when the process stops accepting (which wins over anything
    else in the burst)."""
    try:  # a timeout scope, not wait_for: no extra task per wait for each of many streams
        async with asyncio.timeout(keep_alive):
            seen = await mailbox.take()
    except TimeoutError:
        return None
    return RECONNECTING if RECONNECT in seen else True


async def channel_updates(
    broadcaster: Broadcaster, channel: str, keep_alive: float = KEEP_ALIVE_SECONDS
) -> AsyncIterator[bool | Reconnect | None]:
    """True at once (the page may have missed a change while connecting) and after each
    burst of notifications on ``channel``; None when a keep-alive is due; RECONNECTING
    (last) when the process shuts down."""
    async with broadcaster.listen(channel) as queue:
        yield True
        while True:
            update = await next_update(queue, keep_alive)
            yield update
            if update is RECONNECTING:
                return


def sse(
    updates: AsyncIterator[T | Reconnect | None],
    render: Callable[[T], Awaitable[ServerSentEventMessage]],
) -> ServerSentEvent:
    """An SSE response: each update rendered into a message, a comment for each keep-alive
    (None), so proxies never close a quiet stream, and a ``retry:`` hint before the stream
    ends for a shutdown."""

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        metrics.SSE_CONNECTIONS.inc()
        try:
            async for update in updates:
                if update is None:
                    yield ServerSentEventMessage(comment="keep-alive")
                elif isinstance(update, Reconnect):
                    retry = random.randint(*RECONNECT_MS)
                    yield ServerSentEventMessage(data=None, comment="reconnect", retry=retry)
                    return
                else:
                    yield await render(update)
                update = None  # an idle stream holds no view (see order_updates)
        finally:
            metrics.SSE_CONNECTIONS.dec()

    return ServerSentEvent(messages())
