"""Reconciliation with the delivery partner: catch up on webhooks that never arrived.

The partner retries a webhook a few times and then gives up; an outage of ours longer
than that would leave an order "out for delivery" forever (and without its coupon). So
the delivery worker periodically asks the partner about every pickup that has been
silent for longer than expected, and applies what the partner says through the same
state machines as a webhook would.

Safe to run on every replica at once: each run first claims its pickups by stamping
them as checked (``FOR UPDATE SKIP LOCKED``), so two runs never ask about the same
pickup, and applying news is idempotent anyway.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery import partner_news, service
from app.delivery.gateway import (
    OPEN_PICKUP_STATUSES,
    CourierGateway,
    CourierRejected,
    PickupOutcome,
)
from app.delivery.tasks import CourierContext, withdraw
from app.platform import uow
from app.platform.breaker import BreakerOpen, CircuitBreaker
from app.platform.db import utcnow

log = logging.getLogger(__name__)

RECONCILE = "delivery.reconcile_partner"

#: deliveries waiting for partner news: a rider was asked for, or the food is ready/on
#: its way (in the kitchen stages silence is normal)
_CLAIM_DELIVERIES = text(
    """
    UPDATE delivery.deliveries SET partner_checked_at = :now
    WHERE id IN (
        SELECT id FROM delivery.deliveries
        WHERE partner_ref IS NOT NULL
          AND (courier_status = 'requested'
               OR (courier_status = 'assigned' AND status IN ('ready', 'out_for_delivery')))
          AND status NOT IN ('cancelled', 'delivered', 'return_requested', 'returned')
          AND updated_at < :cutoff
          AND (partner_checked_at IS NULL OR partner_checked_at < :cutoff)
        ORDER BY updated_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, partner_ref
    """
)

#: return trips still active on our side: waiting for the rider or on the way back with
#: the pizzas, or withdrawn by a refund that ended while our cancel at the partner did not
#: get through
_CLAIM_RETURNS = text(
    """
    UPDATE delivery.return_pickups SET checked_at = :now
    WHERE (delivery_id, trip) IN (
        SELECT delivery_id, trip FROM delivery.return_pickups
        WHERE state IN ('active', 'collected')
          AND updated_at < :cutoff
          AND (checked_at IS NULL OR checked_at < :cutoff)
        ORDER BY updated_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    RETURNING delivery_id, trip, partner_ref
    """
)


@dataclass(frozen=True)
class Silent:
    """A pickup we have heard nothing about for too long."""

    delivery_id: uuid.UUID
    partner_ref: str
    trip: int | None = None  # None: the delivery itself; N: return trip N


@dataclass
class Tally:
    asked: int = 0
    changed: int = 0
    withdrawn: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "asked": self.asked,
            "changed": self.changed,
            "withdrawn": self.withdrawn,
            "failed": self.failed,
        }


async def claim_silent(
    session: AsyncSession, cutoff: datetime, now: datetime, batch: int
) -> list[Silent]:
    """Claim (for this run only) the pickups silent since before ``cutoff``."""
    params = {"now": now, "cutoff": cutoff, "batch": batch}
    deliveries = (await session.execute(_CLAIM_DELIVERIES, params)).all()
    returns = (await session.execute(_CLAIM_RETURNS, params)).all()
    return [Silent(row.id, row.partner_ref) for row in deliveries] + [
        Silent(row.delivery_id, row.partner_ref, row.trip) for row in returns
    ]


async def reconcile(ctx: CourierContext) -> dict[str, int]:
    """The periodic job (arq cron on the ``delivery`` queue)."""
    settings = ctx["settings"].partners
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.courier_silence_seconds)
    async with uow.transaction(ctx["session_factory"]) as session:
        silent = await claim_silent(session, cutoff, now, settings.courier_reconcile_batch)
    tally = Tally()
    for pickup in silent:
        try:
            await _reconcile_one(ctx, pickup, tally)
        except BreakerOpen:
            log.info("courier breaker open: reconciliation stops for now")
            break
        except Exception:  # one odd pickup must not stop the others
            tally.failed += 1
            log.exception("reconciling pickup %s failed", pickup.partner_ref)
    if silent:
        log.info("partner reconciliation: %s", tally.as_dict())
    return tally.as_dict()


async def _reconcile_one(ctx: CourierContext, pickup: Silent, tally: Tally) -> None:
    breaker: CircuitBreaker = ctx["courier_breaker"]
    gateway: CourierGateway = ctx["courier_gateway"]
    try:
        status: PickupOutcome = await breaker.call(
            lambda: gateway.pickup_status(partner_ref=pickup.partner_ref)
        )
    except CourierRejected as exc:  # e.g. 404: the partner does not know it (any more)
        log.warning("partner refused status of pickup %s: %s", pickup.partner_ref, exc)
        tally.failed += 1
        return
    except breaker.failure_exceptions:
        tally.failed += 1
        return
    tally.asked += 1
    if pickup.trip is not None and await _withdraw_unwanted(ctx, pickup, status):
        tally.withdrawn += 1
        return
    async with uow.transaction(ctx["session_factory"]) as session:
        before = await _version(session, pickup.delivery_id)
        await partner_news.catch_up(
            session, pickup.partner_ref, status.status, status.rider, utcnow()
        )
        if await _version(session, pickup.delivery_id) != before:
            tally.changed += 1
            log.info("pickup %s: partner says %s, applied", pickup.partner_ref, status.status)


async def _withdraw_unwanted(ctx: CourierContext, pickup: Silent, status: PickupOutcome) -> bool:
    """A return trip whose refund ended: make sure the partner's rider is released."""
    if pickup.trip is None:
        raise ValueError(f"pickup {pickup.partner_ref} is no return trip")
    async with ctx["session_factory"]() as session:
        delivery = await service.get(session, pickup.delivery_id)
    if delivery is not None and service.trip_wanted(delivery, pickup.trip):
        return False
    if status.status in OPEN_PICKUP_STATUSES:
        await withdraw(ctx, pickup.delivery_id, pickup.partner_ref, f"return-{pickup.trip}-")
    elif partner_news.pizzas_astray(delivery, pickup.trip, status.status):
        partner_news.settle_by_hand(pickup.delivery_id, pickup.trip, status.status)
    async with uow.transaction(ctx["session_factory"]) as session:
        await service.settle_unwanted_return(session, pickup.delivery_id, pickup.trip)
    return True


async def _version(session: AsyncSession, delivery_id: uuid.UUID) -> int:
    delivery = await service.get(session, delivery_id)
    return delivery.version if delivery is not None else 0
