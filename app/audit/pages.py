"""The audit trail, for admins."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts
from app.audit import service
from app.audit.models import AuditEntry
from app.delivery import service as delivery
from app.platform.access import access
from app.platform.i18n import N_
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
        entries = await service.recent(db)
        return page(
            request, "audit/trail.html", entries=await _readable(db, entries), actions=ACTIONS
        )


@dataclass(frozen=True)
class Line:
    """An audit entry as an admin reads it: a person's name, an order number."""

    entry: AuditEntry
    who: str
    on: str


ACTIONS = {
    "delivery.advance": N_("Moved to the next stage"),
    "delivery.undo": N_("Undid a kitchen move"),
    "return.complete": N_("Return received"),
    "return.cancel": N_("Cancelled a return"),
    "partner.knobs": N_("Changed the partner simulator"),
    "event.retry": N_("Retried an event"),
    "event.discard": N_("Discarded an event"),
    "reason.save": N_("Saved a refund reason"),
}


async def _readable(db: AsyncSession, entries: list[AuditEntry]) -> list[Line]:
    names = await accounts.display_names(db, {e.actor_id for e in entries})
    deliveries = {
        uuid.UUID(e.target.split(":", 1)[1])
        for e in entries
        if e.target.startswith("delivery:") and _is_uuid(e.target.split(":", 1)[1])
    }
    orders = await delivery.order_ids_of(db, deliveries)
    lines = []
    for e in entries:
        kind, _, ident = e.target.partition(":")
        on = e.target
        if kind == "delivery" and _is_uuid(ident) and uuid.UUID(ident) in orders:
            on = N_("Order #%(number)s", number=str(orders[uuid.UUID(ident)])[:8])
        elif kind == "partner":
            on = {"payment": N_("Payment provider"), "courier": N_("Courier partner")}.get(
                ident, ident
            )
        lines.append(Line(e, names.get(e.actor_id, N_("(deleted account)")), on))
    return lines


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
