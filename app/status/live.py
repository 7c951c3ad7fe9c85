"""Live order updates for SSE: the current view on connect, then one per change.

The stream subscribes BEFORE reading, so no change can fall between the read and the
subscription; every notification only triggers a re-read of the view, and a view is sent
only when its version grew. A comment every 15 s keeps proxies from closing the stream.
When the web process shuts down, each stream ends with a ``retry:`` hint: the browser
reconnects (to another replica) and the first message there is the current view. The
SSE plumbing itself is the kernel's (``app.platform.sse``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.db import read_only
from app.platform.errors import NotFound
from app.platform.i18n import N_
from app.platform.pubsub import Broadcaster
from app.platform.sse import (
    KEEP_ALIVE_SECONDS,
    RECONNECTING,
    Reconnect,
    SharedWork,
    next_update,
)
from app.status import service
from app.status.projector import order_channel

log = logging.getLogger(__name__)


#: per web process: the view reads in flight, by order
_VIEW_READS: SharedWork[uuid.UUID, service.OrderEntry | None] = SharedWork()


async def shared_read(
    session_factory: async_sessionmaker[AsyncSession],
    broadcaster: Broadcaster,
    order_id: uuid.UUID,
    woken_at: int,
) -> service.OrderEntry | None:
    """The order's view, read once for every stream of this process that a notification
    woke (``woken_at``, the broadcaster's count then: see ``SharedWork``). 1,000 viewers
    of one order cost one read per change, not 1,000."""
    return await _VIEW_READS.get(
        order_id, woken_at, broadcaster.delivered, lambda: _read_view(session_factory, order_id)
    )


async def _read_view(
    session_factory: async_sessionmaker[AsyncSession], order_id: uuid.UUID
) -> service.OrderEntry | None:
    # a look-up, outside a transaction: one round trip per change instead of three
    async with read_only(session_factory) as session:
        return await service.any_order_view(session, order_id)


K = TypeVar("K")
V = TypeVar("V")


class RenderMemo(Generic[K, V]):
    """What was rendered for a key (an order's view version), shared by every stream of
    the process for ``ttl`` seconds: a frame's delivery window moves with the clock, but
    not within a second. Concurrent callers of a missing key share one rendering."""

    def __init__(self, ttl: float = 1.0, size: int = 1024) -> None:
        self.ttl, self.size = ttl, size
        self._made: dict[K, tuple[float, asyncio.Task[V]]] = {}
        self._pruned = time.monotonic()

    async def get(self, key: K, make: Callable[[], Awaitable[V]]) -> V:
        now = time.monotonic()
        if now - self._pruned > self.ttl:  # what expired goes, at most once per ttl
            self._made = {k: v for k, v in self._made.items() if now - v[0] <= self.ttl}
            self._pruned = now
        found = self._made.get(key)
        if found is None or now - found[0] > self.ttl or found[1].cancelled():
            if len(self._made) >= self.size:
                self._made = {k: v for k, v in self._made.items() if now - v[0] <= self.ttl}
            found = (now, asyncio.ensure_future(make()))
            self._made[key] = found
        try:
            return await asyncio.shield(found[1])
        except Exception:
            if self._made.get(key) is found:
                del self._made[key]  # a failed rendering is not remembered
            raise


async def order_updates(
    session_factory: async_sessionmaker[AsyncSession],
    broadcaster: Broadcaster,
    order_id: uuid.UUID,
    customer_id: uuid.UUID,
    keep_alive: float = KEEP_ALIVE_SECONDS,
) -> AsyncIterator[service.OrderEntry | Reconnect | None]:
    """Yield the order view whenever it changes, None when a keep-alive is due, and
    RECONNECTING (last) when the process shuts down. The first read is the stream's own
    (it must begin after the subscription); after a notification, streams of the same
    order share one read (``shared_read``)."""
    async with broadcaster.listen(order_channel(order_id)) as mailbox:
        sent = 0
        async with read_only(session_factory) as session:
            view: service.OrderEntry | None = await service.order_view(
                session, order_id, customer_id
            )
        while True:
            if view is not None and view.version > sent:
                sent = view.version
                yield view
            # an idle stream keeps only the version it sent, not the view's document:
            # with thousands of streams that is most of their memory
            view = None
            update = await next_update(mailbox, keep_alive)
            if update is None or update is RECONNECTING:
                yield update
            if update is RECONNECTING:
                return
            if update is True:
                woken_at = broadcaster.delivered
                found = await shared_read(session_factory, broadcaster, order_id, woken_at)
                if found is None or found.customer_id != customer_id:
                    raise NotFound(N_("order not found"))
                view = found
