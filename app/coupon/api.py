"""Coupon JSON API: the caller's coupons."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from app.coupon import service
from app.coupon.schemas import CouponView
from app.platform.access import access
from app.platform.security import Principal


class CouponApi(Controller):
    opt = access("api")
    path = "/api/coupons"
    tags = ["coupons"]

    @get("/")
    async def my_coupons(
        self, db: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
    ) -> list[CouponView]:
        return [CouponView.of(c) for c in await service.coupons_of(db, caller.user_id)]
