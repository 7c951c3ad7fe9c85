"""Reading the order views: the only way pages and the API learn an order's state."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.errors import NotFound
from app.status.models import OrderView


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
