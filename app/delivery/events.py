"""The events the delivery context emits (its contract with the other contexts).

Every one carries the whole delivery as it now stands (a snapshot), so a consumer that
missed one event still sees the latest state with the next.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from app.platform.events import DomainEvent


class DeliveryItem(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One line of the kitchen ticket (copied from the paid order)."""

    pizza_id: int
    name: str
    qty: int
    unit_price: int


class Stage(msgspec.Struct, frozen=True, kw_only=True):
    """A stage the delivery reached, and when."""

    #: a ``DeliveryStatus`` value
    status: str
    at: datetime


class DeliveryChanged(DomainEvent):
    ABSTRACT = True
    AGGREGATE = "delivery"

    delivery_id: uuid.UUID
    order_id: uuid.UUID
    customer_id: uuid.UUID
    #: a ``DeliveryStatus`` value
    status: str
    #: a ``CourierStatus`` value
    courier_status: str
    items: list[DeliveryItem]
    address: str
    rider: str | None = None
    paid_at: datetime | None = None
    delivered_at: datetime | None = None
    #: every stage reached (absent from events written before it was kept)
    history: list[Stage] | None = None
    #: which return trip (1 unless a return was cancelled and asked again)
    return_trip: int | None = None
    partner_eta: datetime | None = None


class DeliveryCreated(DeliveryChanged):
    """The kitchen has a ticket. The job that made it asks for a courier next
    (``app.delivery.tasks.create``): nobody reacts to the event itself."""

    PROJECTION_ONLY = True


class DeliveryAdvanced(DeliveryChanged):
    """Staff moved the delivery a stage on (the courier may be told it is ready)."""


class DeliveryMoveUndone(DeliveryChanged):
    PROJECTION_ONLY = True


class DeliveryDelivered(DeliveryChanged):
    """The pizza arrived: the order is fulfilled and earns a coupon."""


class DeliveryCancelled(DeliveryChanged):
    """The ticket was cancelled with its order: the courier is withdrawn."""


class CourierRequested(DeliveryChanged):
    """The partner took the pickup request. Food already ready by then is told to the
    partner by the job that asked (``app.delivery.tasks.request_courier``)."""

    PROJECTION_ONLY = True


class CourierAssigned(DeliveryChanged):
    PROJECTION_ONLY = True


class DeliveryReturnRequested(DeliveryChanged):
    """A refund needs the pizza back: a return pickup is requested."""


class DeliveryReturnCancelled(DeliveryChanged):
    """The refund was withdrawn: the return pickup is withdrawn."""


class DeliveryReturned(DeliveryChanged):
    """The pizza is back: payment refunds the card."""


EVENTS = (
    DeliveryCreated,
    DeliveryAdvanced,
    DeliveryMoveUndone,
    DeliveryDelivered,
    DeliveryCancelled,
    CourierRequested,
    CourierAssigned,
    DeliveryReturnRequested,
    DeliveryReturnCancelled,
    DeliveryReturned,
)
