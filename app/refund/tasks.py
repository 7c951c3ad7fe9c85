"""Refund event handlers (queue ``refund``)."""

from __future__ import annotations

from typing import Any

from app.platform.handlers import event_of, handle_once
from app.platform.worker import WorkerContext
from app.refund import service

COMPLETE = "refund.complete"
CANCEL_FOR_RETURNED_TRIP = "refund.cancel_for_returned_trip"


async def complete(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    return await handle_once(
        ctx["session_factory"], COMPLETE, event_of(raw), service.complete_for_payment
    )


async def cancel_for_returned_trip(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    return await handle_once(
        ctx["session_factory"],
        CANCEL_FOR_RETURNED_TRIP,
        event_of(raw),
        service.cancel_for_returned_trip,
    )
