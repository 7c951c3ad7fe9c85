"""Delivery: the kitchen ticket and the ride to the customer, with its state machine."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec
from sqlalchemy import DateTime, Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.delivery.events import DeliveryChanged, DeliveryItem, Stage
from app.platform.aggregate import Aggregate, status_column
from app.platform.db import Base, utcnow
from app.platform.errors import IllegalTransition
from app.platform.i18n import N_
from app.platform.statemachine import StateMachine
from app.words import status_label


class DeliveryStatus(StrEnum):
    queued = "queued"
    preparing = "preparing"
    baking = "baking"
    ready = "ready"
    out_for_delivery = "out_for_delivery"
    delivered = "delivered"
    cancelled = "cancelled"
    return_requested = "return_requested"
    returned = "returned"


class CourierStatus(StrEnum):
    unassigned = "unassigned"
    requested = "requested"
    assigned = "assigned"
    withdrawn = "withdrawn"


DELIVERY_MACHINE = StateMachine[DeliveryStatus](
    "delivery",
    {
        DeliveryStatus.queued: frozenset({DeliveryStatus.preparing, DeliveryStatus.cancelled}),
        # Each kitchen stage can also step back once, for a staff member's undo (UNDO).
        DeliveryStatus.preparing: frozenset({DeliveryStatus.baking, DeliveryStatus.queued}),
        DeliveryStatus.baking: frozenset({DeliveryStatus.ready, DeliveryStatus.preparing}),
        DeliveryStatus.ready: frozenset({DeliveryStatus.out_for_delivery}),
        DeliveryStatus.out_for_delivery: frozenset({DeliveryStatus.delivered}),
        # Out of ``delivered`` only through a refund (NFR1.2), and back when it is cancelled.
        DeliveryStatus.delivered: frozenset({DeliveryStatus.return_requested}),
        DeliveryStatus.return_requested: frozenset(
            {DeliveryStatus.returned, DeliveryStatus.delivered}
        ),
    },
)

#: The stages a staff member moves with one click, in order.
FORWARD: dict[DeliveryStatus, DeliveryStatus] = {
    DeliveryStatus.queued: DeliveryStatus.preparing,
    DeliveryStatus.preparing: DeliveryStatus.baking,
    DeliveryStatus.baking: DeliveryStatus.ready,
    DeliveryStatus.ready: DeliveryStatus.out_for_delivery,
    DeliveryStatus.out_for_delivery: DeliveryStatus.delivered,
}

#: Kitchen moves a staff member may take back, for UNDO_SECONDS after making them. Not
#: "ready": the delivery partner has been told and a rider may be on the way.
UNDO: dict[DeliveryStatus, DeliveryStatus] = {
    DeliveryStatus.preparing: DeliveryStatus.queued,
    DeliveryStatus.baking: DeliveryStatus.preparing,
}
UNDO_SECONDS = 30

COURIER_MACHINE = StateMachine[CourierStatus](
    "courier",
    {
        CourierStatus.unassigned: frozenset({CourierStatus.requested, CourierStatus.withdrawn}),
        CourierStatus.requested: frozenset({CourierStatus.assigned, CourierStatus.withdrawn}),
        CourierStatus.assigned: frozenset({CourierStatus.withdrawn}),
    },
)


def stage(status: DeliveryStatus, at: datetime) -> dict[str, Any]:
    return {"status": status.value, "at": at.isoformat()}


class Delivery(Aggregate[DeliveryStatus, DeliveryChanged], Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_status", "status"),
        Index("ix_deliveries_partner_ref", "partner_ref"),
        {"schema": "delivery"},
    )

    MACHINE = DELIVERY_MACHINE

    status: Mapped[DeliveryStatus] = status_column(DeliveryStatus)

    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    courier_status: Mapped[CourierStatus] = status_column(
        CourierStatus, default=CourierStatus.unassigned
    )
    partner_ref: Mapped[str | None] = mapped_column(String(100))
    rider: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(300))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the kitchen and road stages reached, in order: ``[{"status", "at"}]`` (events carry
    #: it, so a page that missed an intermediate event still shows every stage)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    #: how many return trips (refunds) were asked for; the current one is this number
    return_trip: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: when we last asked the partner how the pickup is going (reconciliation)
    partner_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the delivery partner's estimate of the delivery time, once a rider has it
    partner_eta: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def returning(self) -> bool:
        """A return trip (refund) is wanted right now."""
        return self.status == DeliveryStatus.return_requested

    @property
    def correlation_id(self) -> uuid.UUID:
        return self.order_id

    def snapshot(self, event: type[DeliveryChanged], **extra: Any) -> DeliveryChanged:
        return event(
            delivery_id=self.id,
            order_id=self.order_id,
            customer_id=self.customer_id,
            status=self.status,
            courier_status=self.courier_status,
            rider=self.rider,
            items=msgspec.convert(self.items or [], list[DeliveryItem]),
            address=self.address,
            paid_at=self.paid_at,
            delivered_at=self.delivered_at,
            history=msgspec.convert(self.history or [], list[Stage]),
            return_trip=self.return_trip,
            partner_eta=self.partner_eta,
            version=self.version,
            **extra,
        )

    def move_to(self, target: DeliveryStatus) -> DeliveryStatus:
        """A move through the machine; reaching the customer stamps ``delivered_at``, and
        a step forward joins the history of stages."""
        current = super().move_to(target)
        if target is DeliveryStatus.delivered and current is DeliveryStatus.out_for_delivery:
            self.delivered_at = self.updated_at
        if FORWARD.get(current) is target:
            self.history = [*(self.history or []), stage(target, self.updated_at)]
        return current

    def undo_move(self) -> DeliveryStatus:
        """Back to the stage before the last kitchen move (through the machine); the stage
        leaves the history, as if the move had never been made."""
        current = self.status
        target = UNDO.get(current)
        if target is None:
            raise IllegalTransition(
                N_(
                    "A %(status)s delivery has no kitchen move to undo.",
                    status=status_label(current.value),
                )
            )
        self.move_to(target)
        history = list(self.history or [])
        if history and history[-1]["status"] == current.value:
            history.pop()
        self.history = history
        return target

    def courier_to(self, target: CourierStatus) -> None:
        self.courier_status = COURIER_MACHINE.check(CourierStatus(self.courier_status), target)
        self.changed()

    @property
    def next_stage(self) -> DeliveryStatus | None:
        return FORWARD.get(self.status)


class ReturnPickupState(StrEnum):
    #: the partner has (or is being asked for) a rider for this trip
    active = "active"
    #: we cancelled it at the partner (the refund was withdrawn or cancelled)
    withdrawn = "withdrawn"
    #: the rider has the pizzas and is bringing them back: the refund goes ahead (it can
    #: no longer be withdrawn, nor the return cancelled)
    collected = "collected"
    #: the trip is over: the pizzas are back, or the partner ended it
    finished = "finished"


#: how our record of a return trip may move; anything else leaves it as it is (news that
#: comes late or twice)
RETURN_PICKUP_MOVES: dict[ReturnPickupState, frozenset[ReturnPickupState]] = {
    ReturnPickupState.active: frozenset(
        {ReturnPickupState.collected, ReturnPickupState.withdrawn, ReturnPickupState.finished}
    ),
    ReturnPickupState.collected: frozenset({ReturnPickupState.finished}),
}


class ReturnPickup(Base):
    """The partner's pickup for one return trip of a delivery.

    Every refund asks for its own trip (``trip`` = ``Delivery.return_trip`` at the time),
    so a refund filed after a withdrawn one gets a rider of its own, and the pickup of
    the withdrawn one can still be cancelled (and that cancel retried) by its own id.
    """

    __tablename__ = "return_pickups"
    __table_args__ = (
        Index("ix_return_pickups_partner_ref", "partner_ref", unique=True),
        Index("ix_return_pickups_state", "state", "updated_at"),
        {"schema": "delivery"},
    )

    delivery_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    trip: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_ref: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default=ReturnPickupState.active.value)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: when we last asked the partner how this trip is going (reconciliation)
    checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
