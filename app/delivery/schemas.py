"""Delivery API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from app.delivery.models import CourierStatus, Delivery, DeliveryStatus


class MoveRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a staff move: the stage the staff member saw (``{"from": "queued"}``)."""

    from_status: DeliveryStatus | None = msgspec.field(default=None, name="from")


class DeliveryView(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    order_id: uuid.UUID
    status: DeliveryStatus
    courier_status: CourierStatus
    rider: str | None
    address: str
    items: list[dict[str, Any]]
    paid_at: datetime | None
    next_status: DeliveryStatus | None

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryView:
        following = delivery.next_stage
        return cls(
            id=delivery.id,
            order_id=delivery.order_id,
            status=delivery.status,
            courier_status=delivery.courier_status,
            rider=delivery.rider,
            address=delivery.address,
            items=delivery.items,
            paid_at=delivery.paid_at,
            next_status=following,
        )
