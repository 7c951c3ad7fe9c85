"""My coupons page."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from app.coupon import service
from app.platform.access import access
from app.platform.security import Principal
from app.platform.web import page


class CouponPages(Controller):
    opt = access("customer")
    path = "/coupons"

    @get("/")
    async def my_coupons(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
    ) -> Any:
        return page(
            request, "coupon/coupons.html", coupons=await service.coupons_of(db, customer.user_id)
        )
