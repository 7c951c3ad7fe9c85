"""Order pages: "My orders" and the order page whose timeline updates live over SSE."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.access import access
from app.platform.db import read_only
from app.platform.i18n import current_locale
from app.platform.pubsub import Broadcaster
from app.platform.security import Principal
from app.platform.settings import Settings
from app.platform.sse import sse
from app.platform.web import fragment, page, take_notice
from app.status import service
from app.status.live import RenderMemo, order_updates
from app.status.schemas import OrderDocument

#: per web process: the order page's live fragment, per order version and language
HTML_FRAMES: RenderMemo[tuple[uuid.UUID, int, str], str] = RenderMemo()


class OrderPages(Controller):
    opt = access("customer")
    path = "/orders"

    @get("/")
    async def my_orders(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
    ) -> Any:
        views = await service.order_views(db, customer.user_id)
        return page(request, "status/orders.html", orders=[OrderDocument.of(v.doc) for v in views])

    @get("/{order_id:uuid}")
    async def order_page(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
        settings: NamedDependency[Settings],
    ) -> Any:
        view = await service.order_view(db, order_id, customer.user_id)
        minutes = settings.shop.stage_minutes
        return page(
            request,
            "status/order.html",
            order=await service.order_document(db, view, minutes),
            version=view.version,
            notice=take_notice(request, request.url.path),
        )

    @get("/{order_id:uuid}/live")
    async def order_live(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        late: FromQuery[str] = "false",
    ) -> Any:
        """The live part of the order page again, asked for every minute while a delivery
        window is shown: time passes without any event (a kitchen that stalls), and the
        customer must be told when the order runs late. Screen readers hear it only when
        it turns late (``late`` is what the page showed), not every minute."""
        view = await service.order_view(db, order_id, customer.user_id)
        minutes = settings.shop.stage_minutes
        order = await service.order_document(db, view, minutes)
        window = order.estimated_delivery
        turned_late = window is not None and window.running_late and late != "true"
        return page(
            request,
            "status/_order_live.html",
            order=order,
            version=view.version,
            live=True,
            announce=turned_late,
        )

    @get("/{order_id:uuid}/stream")
    async def order_stream(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        session_factory: NamedDependency[async_sessionmaker[AsyncSession]],
        broadcaster: NamedDependency[Broadcaster],
    ) -> ServerSentEvent:
        """HTML fragments for the htmx sse extension (``sse-swap="order"``)."""
        await service.order_view(db, order_id, customer.user_id)
        template = fragment(request, "status/_order_live.html")

        async def for_everyone(view: service.OrderEntry) -> str:
            async with read_only(session_factory) as session:
                order = await service.order_document(session, view, settings.shop.stage_minutes)
            return template.for_everyone(order=order, version=view.version, live=True)

        async def render(view: service.OrderEntry) -> ServerSentEventMessage:
            # every viewer of this version on this process shares one render (in its
            # language); each gets its own CSRF token
            key = (view.order_id, view.version, current_locale())
            html = await HTML_FRAMES.get(key, lambda: for_everyone(view))
            return ServerSentEventMessage(
                data=template.for_viewer(html), event="order", id=str(view.version)
            )

        updates = order_updates(session_factory, broadcaster, order_id, customer.user_id)
        return sse(updates, render)
