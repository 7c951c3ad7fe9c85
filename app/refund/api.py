"""Refund JSON API: reasons, file a refund, look refunds up, withdraw one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.access import access
from app.platform.errors import InvalidInput
from app.platform.i18n import N_
from app.platform.partners import PartnerBreakers
from app.platform.security import Principal
from app.platform.settings import Settings
from app.platform.text import storable
from app.refund import service
from app.refund.schemas import ReasonView, RefundOut, RefundRequest
from app.status import service as status


class RefundApi(Controller):
    opt = access("api")
    path = "/api"
    tags = ["refunds"]

    @get("/refund-reasons")
    async def reasons(
        self, db: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
    ) -> list[ReasonView]:
        return [
            ReasonView(code=r.code, label=r.label, requires_text=r.requires_text)
            for r in await service.reasons(db)
        ]

    @post("/refunds", status_code=201)
    async def file_refund(
        self,
        data: JSONBody[RefundRequest],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        caller: NamedDependency[Principal],
        breakers: NamedDependency[PartnerBreakers],
    ) -> RefundOut:
        """409 when the order cannot be refunded (saying why); 503 + ``Retry-After`` while
        the delivery partner's breaker is open."""
        refund = await service.file_refund(
            db,
            settings,
            service.FileRefund(caller.user_id, data.order_id, data.reason_code, data.reason),
            gate=breakers,
        )
        return RefundOut.of_refund(refund)

    @get("/refunds")
    async def list_refunds(
        self,
        db: NamedDependency[AsyncSession],
        caller: NamedDependency[Principal],
        reason_code: Annotated[str | None, QueryParameter(name="reasonCode", max_length=40)] = None,
        q: Annotated[str | None, QueryParameter(name="q", max_length=200)] = None,
        since: Annotated[datetime | None, QueryParameter(name="from")] = None,
        until: Annotated[datetime | None, QueryParameter(name="to")] = None,
    ) -> list[RefundOut]:
        """The caller's refunds; staff see everyone's and may filter."""
        if not all(storable(v) for v in (reason_code or "", q or "")):
            raise InvalidInput.single(
                "q", N_("The search contains characters we cannot search for.")
            )
        filters = status.RefundFilter(
            customer_id=None if caller.is_staff else caller.user_id,
            reason_code=reason_code,
            q=q,
            since=_instant(since, "from"),
            until=_instant(until, "to"),
        )
        return [RefundOut.of_view(v) for v in await status.refund_views(db, filters)]

    @get("/refunds/{refund_id:uuid}")
    async def get_refund(
        self,
        refund_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        caller: NamedDependency[Principal],
    ) -> RefundOut:
        owner = None if caller.is_staff else caller.user_id
        return RefundOut.of_view(await status.refund_view(db, refund_id, owner))

    @post("/refunds/{refund_id:uuid}/cancel", status_code=200)
    async def withdraw(
        self,
        refund_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        caller: NamedDependency[Principal],
    ) -> RefundOut:
        """The customer withdraws the refund: the return is cancelled, no money moves."""
        refund = await service.withdraw(db, refund_id, caller.user_id)
        return RefundOut.of_refund(refund)


def _instant(value: datetime | None, name: str) -> datetime | None:
    """A filter bound as an aware UTC instant PostgreSQL can compare: no time zone means
    UTC; a moment outside years 1-9999 once in UTC (``9999-12-31T23:00-05:00``) is a 422
    rather than a database error."""
    if value is None:
        return None
    try:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInput.single(name, N_("Use a date between the years 1 and 9999.")) from exc
