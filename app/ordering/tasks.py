"""Ordering event handlers (queue ``ordering``): the order follows its payment."""

from __future__ import annotations

from typing import Any

from app.ordering import service
from app.platform.handlers import event_of, handle_once
from app.platform.worker import WorkerContext

ON_PAYMENT_CAPTURED = "ordering.on_payment_captured"
ON_PAYMENT_FAILED = "ordering.on_payment_failed"
ON_DELIVERY_DELIVERED = "ordering.on_delivery_delivered"


async def on_payment_captured(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    return await handle_once(
        ctx["session_factory"], ON_PAYMENT_CAPTURED, event_of(raw), service.on_payment_captured
    )


async def on_payment_failed(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    return await handle_once(
        ctx["session_factory"], ON_PAYMENT_FAILED, event_of(raw), service.on_payment_failed
    )


async def on_delivery_delivered(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    return await handle_once(
        ctx["session_factory"],
        ON_DELIVERY_DELIVERED,
        event_of(raw),
        service.on_delivery_delivered,
    )


ON_PAYMENT_REFUNDED = "ordering.on_payment_refunded"


async def on_payment_refunded(ctx: WorkerContext, raw: dict[str, Any]) -> bool:
    return await handle_once(
        ctx["session_factory"], ON_PAYMENT_REFUNDED, event_of(raw), service.on_payment_refunded
    )
