"""Reading the order views: the only way pages and the API learn an order's state."""

from __future__ import annotations

import uuid
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.db import utcnow
from app.platform.errors import NotFound
from app.platform.events import Event
from app.status import projector
from app.status.models import BoardCard, OrderView

#: the board shows delivered cards for this long, then they leave it
DELIVERED_VISIBLE = timedelta(minutes=30)


async def order_view(
    session: AsyncSession, order_id: uuid.UUID, customer_id: uuid.UUID
) -> OrderView:
    """The customer's own order view; someone else's order is simply not found (404)."""
    view = await session.scalar(
        select(OrderView).where(
            OrderView.order_id == order_id, OrderView.customer_id == customer_id
        )
    )
    if view is None:
        raise NotFound("order not found")
    return view


async def order_views(
    session: AsyncSession, customer_id: uuid.UUID, limit: int = 100
) -> list[OrderView]:
    rows = await session.scalars(
        select(OrderView)
        .where(OrderView.customer_id == customer_id)
        .order_by(OrderView.created_at.desc())
        .limit(limit)
    )
    return list(rows)


async def board_cards(session: AsyncSession) -> list[BoardCard]:
    """Deliveries in progress, plus the ones delivered in the last half hour."""
    recent = utcnow() - DELIVERED_VISIBLE
    rows = await session.scalars(
        select(BoardCard)
        .where(
            or_(
                BoardCard.status.not_in(("delivered", "cancelled", "returned")),
                (BoardCard.status == "delivered") & (BoardCard.updated_at >= recent),
            )
        )
        .order_by(BoardCard.paid_at.asc().nulls_last())
        .limit(500)
    )
    return list(rows)


async def project_now(
    session_factory: async_sessionmaker[AsyncSession], redis: Redis, events: list[Event]
) -> None:
    """Read-your-writes: project events the web just committed and notify live pages.

    The status worker gets the same events from the outbox; the projector's versions make
    its second pass a no-op, and it covers us if this process dies right here.
    """
    for event in events:
        if event.type not in projector.HANDLED:
            continue
        try:
            async with session_factory() as session, session.begin():
                channels = await projector.apply(session, event)
        except projector.ViewNotReady:
            continue
        for channel in channels:
            await redis.publish(channel, event.type)
