"""Refund event handlers (queue ``refund``)."""

from __future__ import annotations

from typing import Any

from app.platform.handlers import event_of, handle_once
from app.refund import service

COMPLETE = "refund.complete"


async def complete(ctx: dict[str, Any], raw: dict[str, Any]) -> bool:
    return await handle_once(
        ctx["session_factory"], COMPLETE, event_of(raw), service.complete_for_payment
    )
