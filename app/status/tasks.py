"""Status event handlers (queue ``status``): update the views, then tell the web processes."""

from __future__ import annotations

from typing import Any

from arq import Retry

from app.platform.handlers import event_of, retry_delay
from app.status import projector

PROJECT = "status.project"


def order_channel(order_id: Any) -> str:
    return f"order:{order_id}"


def customer_channel(customer_id: Any) -> str:
    return f"customer:{customer_id}"


async def project(ctx: dict[str, Any], raw: dict[str, Any]) -> bool:
    """Fold one event into the order view and notify live pages after commit."""
    event = event_of(raw)
    try:
        async with ctx["session_factory"]() as session, session.begin():
            changed = await projector.apply(session, event)
    except projector.ViewNotReady as exc:
        raise Retry(defer=retry_delay(ctx["job_try"])) from exc
    if changed is None:
        return False
    redis = ctx["redis"]
    await redis.publish(order_channel(changed), event.type)
    if customer_id := event.payload.get("customerId"):
        await redis.publish(customer_channel(customer_id), event.type)
    return True
