"""The menu page: pizzas on the left, the basket on the right."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from app.menu import service
from app.ordering.basket import basket_lines
from app.platform.access import access
from app.platform.web import page


class MenuPages(Controller):
    opt = access("public")

    @get("/")
    async def menu(self, request: Request[Any, Any, Any], db: NamedDependency[AsyncSession]) -> Any:
        pizzas = await service.list_menu(db)
        return page(
            request, "menu/menu.html", pizzas=pizzas, basket=await basket_lines(request, db)
        )
