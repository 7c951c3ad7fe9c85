"""Menu JSON API."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from app.menu import service
from app.menu.schemas import PizzaView
from app.platform.access import access
from app.platform.security import Principal
from app.platform.settings import Settings


class MenuApi(Controller):
    opt = access("api")
    path = "/api/menu"
    tags = ["menu"]

    @get("/")
    async def menu(
        self,
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        caller: NamedDependency[Principal],
    ) -> list[PizzaView]:
        currency = settings.shop.currency
        return [
            PizzaView(
                id=p.id, name=p.name, description=p.description, price=p.price, currency=currency
            )
            for p in await service.list_menu(db)
        ]
