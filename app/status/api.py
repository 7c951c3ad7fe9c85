"""Order read API: the caller's orders, one order, and its live event stream."""

from __future__ import annotations

import uuid

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.access import access
from app.platform.db import read_only
from app.platform.pubsub import Broadcaster
from app.platform.security import Principal
from app.platform.settings import Settings
from app.platform.sse import sse
from app.status import service
from app.status.live import RenderMemo, order_updates
from app.status.schemas import OrderDocument

#: the API stream's frames, by (order, view version)
API_FRAMES: RenderMemo[tuple[uuid.UUID, int], str] = RenderMemo()


class OrderStatusApi(Controller):
    opt = access("api")
    path = "/api/orders"
    tags = ["orders"]

    @get("/")
    async def list_orders(
        self,
        db: NamedDependency[AsyncSession],
        caller: NamedDependency[Principal],
        settings: NamedDependency[Settings],
    ) -> list[OrderDocument]:
        minutes = settings.shop.stage_minutes
        return [
            await service.order_document(db, v, minutes)
            for v in await service.order_views(db, caller.user_id)
        ]

    @get("/{order_id:uuid}")
    async def get_order(
        self,
        order_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        caller: NamedDependency[Principal],
        settings: NamedDependency[Settings],
    ) -> OrderDocument:
        """The order with ``estimatedDelivery`` (``earliest``, ``latest``) while it is paid
        and on its way."""
        view = await service.order_view(db, order_id, caller.user_id)
        return await service.order_document(db, view, settings.shop.stage_minutes)

    @get("/{order_id:uuid}/events", media_type="text/event-stream")
    async def order_events(
        self,
        order_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        caller: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        session_factory: NamedDependency[async_sessionmaker[AsyncSession]],
        broadcaster: NamedDependency[Broadcaster],
    ) -> ServerSentEvent:
        """``text/event-stream``: event ``order`` with the whole view, id = view version."""
        await service.order_view(db, order_id, caller.user_id)  # 404 before streaming

        async def encode(view: service.OrderEntry) -> str:
            async with read_only(session_factory) as session:
                document = await service.order_document(session, view, settings.shop.stage_minutes)
            return msgspec.json.encode(document).decode()

        async def render(view: service.OrderEntry) -> ServerSentEventMessage:
            # every viewer of this order (its one customer) gets the same JSON: rendered
            # once per version per process
            data = await API_FRAMES.get((view.order_id, view.version), lambda: encode(view))
            return ServerSentEventMessage(data=data, event="order", id=str(view.version))

        updates = order_updates(session_factory, broadcaster, order_id, caller.user_id)
        return sse(updates, render)
