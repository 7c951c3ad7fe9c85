"""Delivery JSON API for staff: list deliveries, move one to its next stage."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.delivery import service
from app.delivery.models import DeliveryStatus
from app.delivery.schemas import DeliveryView, MoveRequest
from app.platform.access import access
from app.platform.errors import NotFound
from app.platform.i18n import N_
from app.platform.security import Principal


class DeliveryApi(Controller):
    opt = access("api-staff")
    path = "/api/deliveries"
    tags = ["deliveries (staff)"]

    @get("/")
    async def list_deliveries(
        self,
        db: NamedDependency[AsyncSession],
        staff_caller: NamedDependency[Principal],
        status: FromQuery[DeliveryStatus | None] = None,
    ) -> list[DeliveryView]:
        return [DeliveryView.of(d) for d in await service.list_deliveries(db, status)]

    @get("/{delivery_id:uuid}")
    async def get_delivery(
        self,
        delivery_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff_caller: NamedDependency[Principal],
    ) -> DeliveryView:
        delivery = await service.get(db, delivery_id)
        if delivery is None:
            raise NotFound(N_("delivery not found"))
        return DeliveryView.of(delivery)

    @post("/{delivery_id:uuid}/advance", status_code=200)
    async def advance(
        self,
        delivery_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff_caller: NamedDependency[Principal],
        data: JSONBody[MoveRequest | None] = None,
    ) -> DeliveryView:
        """Move to the next stage; 409 when there is none, or when the delivery is no
        longer at the stage the caller saw (``{"from": "queued"}``: a double click or a
        retried request never moves it twice)."""
        expected = data.from_status if data is not None else None
        audit.record(db, staff_caller, "delivery.advance", f"delivery:{delivery_id}")
        return DeliveryView.of(await service.advance(db, delivery_id, expected))

    @post("/{delivery_id:uuid}/undo", status_code=200)
    async def undo(
        self,
        delivery_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff_caller: NamedDependency[Principal],
    ) -> DeliveryView:
        """Take back the last kitchen move within 30 s; 409 saying why otherwise."""
        audit.record(db, staff_caller, "delivery.undo", f"delivery:{delivery_id}")
        return DeliveryView.of(await service.undo_last_move(db, delivery_id))

    @post("/{delivery_id:uuid}/return/complete", status_code=200)
    async def complete_return(
        self,
        delivery_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff_caller: NamedDependency[Principal],
    ) -> DeliveryView:
        """The returned pizzas are back: the money goes back to the customer."""
        audit.record(db, staff_caller, "return.complete", f"delivery:{delivery_id}")
        return DeliveryView.of(await service.confirm_return(db, delivery_id))
