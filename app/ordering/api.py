"""Ordering JSON API: place an order (idempotent with ``Idempotency-Key``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.ordering import service
from app.ordering.schemas import PlaceOrderRequest
from app.platform.errors import InvalidInput
from app.platform.security import Principal
from app.platform.settings import Settings
from app.status import service as status
from app.status.schemas import OrderDocument

IdempotencyKey = Annotated[
    str | None, Parameter(header="Idempotency-Key", required=False, max_length=100)
]


class OrderingApi(Controller):
    path = "/api/orders"
    tags = ["orders"]

    @post("/", status_code=201)
    async def place_order(
        self,
        data: PlaceOrderRequest,
        db: AsyncSession,
        settings: Settings,
        caller: Principal,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[OrderDocument]:
        if idempotency_key is not None and not idempotency_key.strip():
            raise InvalidInput.single("Idempotency-Key", "must not be blank")
        placed = await service.place_order(
            db,
            settings,
            service.PlaceOrder(
                customer_id=caller.user_id,
                lines=[service.LineRequest(i.pizza_id, i.qty) for i in data.items],
                address=data.address,
                card_number=data.card_number,
                idempotency_key=idempotency_key,
            ),
        )
        view = await status.order_view(db, placed.order_id, caller.user_id)
        headers = {"Idempotent-Replayed": "true"} if placed.replayed else {}
        return Response(OrderDocument.of(view.doc), status_code=201, headers=headers)
