"""Ordering JSON API: place an order (idempotent with ``Idempotency-Key``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.ordering import service
from app.ordering.schemas import PlaceOrderRequest
from app.payment.service import CardVault
from app.platform import limits
from app.platform.access import access
from app.platform.errors import InvalidInput
from app.platform.i18n import N_
from app.platform.partners import PartnerBreakers
from app.platform.security import Principal
from app.platform.settings import Settings
from app.status import service as status

IdempotencyKey = Annotated[
    str | None, HeaderParameter(name="Idempotency-Key", required=False, max_length=100)
]


class OrderingApi(Controller):
    opt = access("api")
    path = "/api/orders"
    tags = ["orders"]

    @post("/", status_code=201)
    async def place_order(
        self,
        data: JSONBody[PlaceOrderRequest],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        caller: NamedDependency[Principal],
        breakers: NamedDependency[PartnerBreakers],
        card_vault: NamedDependency[CardVault],
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[status.OrderDocument]:
        """Place and pay an order. 503 + ``Retry-After`` while a partner breaker is open."""
        await limits.place_order(request, str(caller.user_id))
        if idempotency_key is not None and not idempotency_key.strip():
            raise InvalidInput.single("Idempotency-Key", N_("must not be blank"))
        placed = await service.place_order(
            db,
            settings,
            service.PlaceOrder(
                customer_id=caller.user_id,
                lines=[service.LineRequest(i.pizza_id, i.qty) for i in data.items],
                address=data.address,
                card_number=data.card_number,
                idempotency_key=idempotency_key,
                coupon_code=data.coupon_code or None,
                phone=data.phone or "",
                note=data.note or "",
                customer_name=caller.name,
            ),
            gate=breakers,
            vault=card_vault,
        )
        view = await status.order_view(db, placed.order_id, caller.user_id)
        headers = {"Idempotent-Replayed": "true"} if placed.replayed else {}
        document = await status.order_document(db, view, settings.shop.stage_minutes)
        return Response(document, status_code=201, headers=headers)

    @post("/{order_id:uuid}/cancel", status_code=200)
    async def cancel(
        self,
        order_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        caller: NamedDependency[Principal],
        settings: NamedDependency[Settings],
    ) -> status.OrderDocument:
        """Cancel while the kitchen has not started; 409 saying why otherwise."""
        await service.cancel_order(db, order_id, caller.user_id)
        view = await status.order_view(db, order_id, caller.user_id)
        return await status.order_document(db, view, settings.shop.stage_minutes)
