"""Coupon event handlers (queue ``coupon``). While this worker is down nothing else waits:
orders, payments and deliveries go on, and the coupons catch up when it returns."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.coupon import service
from app.platform.events import Event
from app.platform.handlers import event_of, handle_once
from app.platform.worker import WorkerContext

ISSUE = "coupon.issue"


async def issue(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    async def effect(session: AsyncSession, event: Event) -> None:
        await service.issue_for_delivery(session, ctx["settings"], event)

    return await handle_once(ctx["session_factory"], ISSUE, event_of(raw), effect)


REVOKE = "coupon.revoke"
REINSTATE = "coupon.reinstate"


async def revoke(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    return await handle_once(
        ctx["session_factory"], REVOKE, event_of(raw), service.revoke_for_refund
    )


async def reinstate(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    async def effect(session: AsyncSession, event: Event) -> None:
        await service.reinstate_for_refund(session, ctx["settings"], event)

    return await handle_once(ctx["session_factory"], REINSTATE, event_of(raw), effect)
