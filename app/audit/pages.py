"""The audit trail, for admins."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service
from app.platform.access import access
from app.platform.security import Principal
from app.platform.web import page


class AuditPages(Controller):
    opt = access("admin")
    path = "/admin/audit"

    @get("/")
    async def trail(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        admin: NamedDependency[Principal],
    ) -> Any:
        return page(request, "audit/trail.html", entries=await service.recent(db))
