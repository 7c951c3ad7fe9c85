"""What the delivery partner tells us about a pickup, however it reaches us: a signed
webhook, or our own question when its webhooks went missing (reconciliation).

Either way the news goes through the state machines, and stale or repeated news
changes nothing, so a webhook that arrives after reconciliation already applied the same
news is harmless. A cancelled return trip cancels its refund through
``DeliveryReturnCancelled``: delivery knows nothing of refunds.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery import service
from app.delivery.models import Delivery, ReturnPickupState
from app.platform.errors import Unavailable
from app.platform.i18n import N_

log = logging.getLogger(__name__)


async def apply(
    db: AsyncSession,
    pickup_id: str,
    kind: str,
    rider: str | None,
    at: datetime,
    reference: str | None = None,
    eta: datetime | None = None,
) -> None:
    """One piece of news (``rider_assigned``, ``picked_up``, ``delivered``, ``cancelled``)
    about a pickup: the delivery itself (most news, looked up first) or a return trip
    (refund). A webhook's ``reference`` must be the one we booked the pickup with (422
    otherwise)."""
    if await service.apply_partner_event(
        db, pickup_id, kind, rider, at, reference=reference, eta=eta
    ):
        return
    returning = await service.by_return_pickup(db, pickup_id)
    if returning is None:
        # Not booked yet on our side: the partner can answer (and send news) before the
        # job that asked it has recorded the pickup id. 503: the partner sends it again.
        raise Unavailable(N_("This pickup is not known yet; please send it again."), 1)
    delivery, pickup = returning
    if reference is not None:
        service.ensure_reference(reference, service.partner_reference(delivery.id, "return"))
    if not service.trip_wanted(delivery, pickup.trip):
        if pizzas_astray(delivery, pickup.trip, kind):
            settle_by_hand(delivery.id, pickup.trip, kind)
        return  # news about a trip whose refund is over: nothing to change
    if kind == service.PICKED_UP:  # on their way back: the refund can no longer be withdrawn
        await service.settle_return_pickup(
            db, delivery.id, pickup.trip, ReturnPickupState.collected
        )
    elif kind == service.DELIVERED:  # the pizzas are back at the shop
        await service.complete_return(db, delivery.id)
        await service.settle_return_pickup(db, delivery.id, pickup.trip, ReturnPickupState.finished)
    elif kind == service.PARTNER_CANCELLED:  # FR11: the partner cancelled the trip
        if pickup.state != ReturnPickupState.collected:
            await service.partner_cancelled_return(db, delivery.id)
        else:  # with the pizzas on board: the refund stays, for staff to settle
            settle_by_hand(delivery.id, pickup.trip, kind)
        await service.settle_return_pickup(db, delivery.id, pickup.trip, ReturnPickupState.finished)


def pizzas_astray(delivery: Delivery | None, trip: int, news: str) -> bool:
    """The rider has (or brought back) the pizzas of a trip no refund waits for: our
    cancel came after they had them (the partner refused it)."""
    return news in (service.PICKED_UP, service.DELIVERED) and not (
        delivery is not None and service.pizzas_came_back(delivery, trip)
    )


def settle_by_hand(delivery_id: uuid.UUID, trip: int, kind: str) -> None:
    """What the partner says cannot be squared with the refund on its own: staff decide
    (Return received, or Cancel return), so the customer is never left with neither the
    pizzas nor the money."""
    log.warning(
        "return trip %s of delivery %s: the partner says %s while no refund waits for it, "
        "or after its rider collected the pizzas; settle with the customer",
        trip,
        delivery_id,
        kind,
    )


#: the news a pickup's current status at the partner stands for, in the order it happened
NEWS_FOR_STATUS: dict[str, tuple[str, ...]] = {
    "requested": (),
    "assigned": (service.RIDER_ASSIGNED,),
    "picked_up": (service.RIDER_ASSIGNED, service.PICKED_UP),
    "delivered": (service.RIDER_ASSIGNED, service.PICKED_UP, service.DELIVERED),
    "cancelled": (service.PARTNER_CANCELLED,),
}


async def catch_up(
    db: AsyncSession, pickup_id: str, status: str, rider: str | None, at: datetime
) -> None:
    """Apply everything the partner's current ``status`` implies, step by step."""
    for kind in NEWS_FOR_STATUS.get(status, ()):
        await apply(db, pickup_id, kind, rider, at)
