"""Cancelling a return trip: a refund use case (FR11), entered from the staff API and the
kitchen board's return card.

The routes keep delivery's URLs, because that is where staff meet a return, but the
adapters live here: delivery knows nothing of refunds, and refund asks delivery (through
its service) for the delivery the staff named.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.delivery import service as delivery
from app.platform.access import access
from app.platform.errors import InvalidInput, NotFound
from app.platform.i18n import N_
from app.platform.security import Principal
from app.platform.text import plain
from app.platform.web import is_htmx, redirect
from app.refund import service

#: where the board's body is rendered alone; an HTMX form that cancelled a return swaps it in
BOARD_COLUMNS = "/staff/board/columns"


class ReturnApi(Controller):
    opt = access("api-staff")
    path = "/api/deliveries"
    tags = ["deliveries (staff)"]

    @post("/{delivery_id:uuid}/return/cancel", status_code=200)
    async def cancel_return(
        self,
        delivery_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff_caller: NamedDependency[Principal],
    ) -> delivery.DeliveryView:
        """Cancel the return trip: the refund is cancelled too (FR11)."""
        audit.record(db, staff_caller, "return.cancel", f"delivery:{delivery_id}")
        await service.cancel_return(db, delivery_id, "staff")
        return await delivery.view(db, delivery_id)


class ReturnPages(Controller):
    opt = access("staff")
    path = "/staff/deliveries"

    @post("/{delivery_id:uuid}/return/cancel")
    async def cancel_return(
        self,
        request: Request[Any, Any, Any],
        delivery_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff: NamedDependency[Principal],
    ) -> Any:
        """A return card's "Cancel return", with a reason the customer reads, confirmed on
        the card. The board's body comes back for HTMX (through a 303 its request follows)."""
        if await delivery.facts(db, delivery_id) is None:
            raise NotFound(N_("delivery not found"))
        note = str((await request.form()).get("note") or "").strip()
        if not note or len(note) > 500:
            raise InvalidInput.single("note", N_("Tell the customer why (at most 500 characters)."))
        if not plain(note):  # the customer reads it: an override would turn it around
            raise InvalidInput.single("note", N_("Please use printable characters."))
        audit.record(db, staff, "return.cancel", f"delivery:{delivery_id}", reason=note)
        await service.cancel_return(db, delivery_id, "staff", note=note)
        if is_htmx(request):
            return Redirect(path=BOARD_COLUMNS, status_code=303)
        return redirect(request, "/staff/board")
