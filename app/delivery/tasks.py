"""Delivery event handlers (queue ``delivery``): the ticket and the delivery partner.

Partner calls go through the ``courier`` circuit breaker; a refused or failed call is
retried later with backoff (the delivery shows "finding a rider" meanwhile), never dropped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.delivery import service
from app.delivery.gateway import CourierGateway, CourierRejected
from app.delivery.models import CourierStatus, DeliveryStatus
from app.platform.handlers import call_partner, event_of, handle_once

log = logging.getLogger(__name__)
T = TypeVar("T")

CREATE = "delivery.create"
REQUEST_COURIER = "delivery.request_courier"
NOTIFY_READY = "delivery.notify_ready"
WITHDRAW_COURIER = "delivery.withdraw_courier"


async def _partner(ctx: dict[str, Any], call: Callable[[CourierGateway], Awaitable[T]]) -> T:
    gateway: CourierGateway = ctx["courier_gateway"]
    return await call_partner(ctx["courier_breaker"], lambda: call(gateway), ctx["job_try"])


async def create(ctx: dict[str, Any], raw: dict[str, Any]) -> bool:
    return await handle_once(
        ctx["session_factory"], CREATE, event_of(raw), service.create_for_paid_order
    )


async def request_courier(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
    event = event_of(raw)
    delivery_id = uuid.UUID(event.payload["deliveryId"])
    async with ctx["session_factory"]() as session:
        delivery = await service.get(session, delivery_id)
    if delivery is None or delivery.courier_status != CourierStatus.unassigned:
        return "skipped"
    if delivery.status == DeliveryStatus.cancelled:
        return "cancelled"
    callback = f"{ctx['settings'].public_url}/webhooks/courier"
    outcome = await _partner(
        ctx,
        lambda gateway: gateway.request_pickup(
            reference=service.partner_reference(delivery_id),
            address=delivery.address,
            callback_url=callback,
            idempotency_key=f"{delivery_id}:pickup",
        ),
    )
    async with ctx["session_factory"]() as session, session.begin():
        cancelled_meanwhile = await service.record_pickup_requested(
            session, delivery_id, outcome.partner_ref, event
        )
    if cancelled_meanwhile:
        await _withdraw(ctx, delivery_id, outcome.partner_ref)
        return "withdrawn"
    return "requested"


async def notify_ready(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
    """Tell the partner the food can be collected (once ready AND a rider was requested)."""
    delivery_id = uuid.UUID(event_of(raw).payload["deliveryId"])
    async with ctx["session_factory"]() as session:
        delivery = await service.get(session, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.ready or not delivery.partner_ref:
        return "skipped"
    partner_ref = delivery.partner_ref
    await _partner(
        ctx,
        lambda gateway: gateway.mark_ready(
            partner_ref=partner_ref, idempotency_key=f"{delivery_id}:ready"
        ),
    )
    return "notified"


async def withdraw_courier(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
    delivery_id = uuid.UUID(event_of(raw).payload["deliveryId"])
    async with ctx["session_factory"]() as session:
        delivery = await service.get(session, delivery_id)
    if delivery is None or not delivery.partner_ref:
        return "nothing to withdraw"
    await _withdraw(ctx, delivery_id, delivery.partner_ref)
    return "withdrawn"


async def _withdraw(
    ctx: dict[str, Any], delivery_id: uuid.UUID, partner_ref: str, trip: str = ""
) -> None:
    """Cancel a pickup at the partner (``trip="return-"`` for a refund's return trip)."""
    try:
        await _partner(
            ctx,
            lambda gateway: gateway.cancel_pickup(
                partner_ref=partner_ref, idempotency_key=f"{delivery_id}:{trip}cancel"
            ),
        )
    except CourierRejected as exc:  # e.g. already picked up: nothing left to withdraw
        log.warning("withdraw of pickup %s refused: %s", partner_ref, exc)


REQUEST_RETURN_PICKUP = "delivery.request_return_pickup"
WITHDRAW_RETURN_PICKUP = "delivery.withdraw_return_pickup"


async def request_return_pickup(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
    """``DeliveryReturnRequested`` → ask the partner to collect the pizzas (a refund)."""
    delivery_id = uuid.UUID(event_of(raw).payload["deliveryId"])
    async with ctx["session_factory"]() as session:
        delivery = await service.get(session, delivery_id)
    if delivery is None or delivery.return_partner_ref:
        return "skipped"
    if delivery.status != DeliveryStatus.return_requested:
        return "no return in progress"
    callback = f"{ctx['settings'].public_url}/webhooks/courier"
    outcome = await _partner(
        ctx,
        lambda gateway: gateway.request_pickup(
            reference=service.partner_reference(delivery_id, "return"),
            address=delivery.address,
            callback_url=callback,
            idempotency_key=f"{delivery_id}:return-pickup",
        ),
    )
    async with ctx["session_factory"]() as session, session.begin():
        cancelled_meanwhile = await service.record_return_pickup(
            session, delivery_id, outcome.partner_ref
        )
    if cancelled_meanwhile:
        await _withdraw(ctx, delivery_id, outcome.partner_ref, trip="return-")
        return "withdrawn"
    return "requested"


async def withdraw_return_pickup(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
    """``DeliveryReturnCancelled`` → the partner need not come (FR11)."""
    delivery_id = uuid.UUID(event_of(raw).payload["deliveryId"])
    async with ctx["session_factory"]() as session:
        delivery = await service.get(session, delivery_id)
    if delivery is None or not delivery.return_partner_ref:
        return "nothing to withdraw"
    await _withdraw(ctx, delivery_id, delivery.return_partner_ref, trip="return-")
    return "withdrawn"
