"""Refund JSON API: reasons, file a refund, look refunds up, withdraw one."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.access import access
from app.platform.errors import FieldError, InvalidInput
from app.platform.i18n import N_
from app.platform.partners import PartnerBreakers
from app.platform.security import Principal
from app.platform.settings import Settings
from app.platform.text import storable
from app.refund import service
from app.refund.schemas import ReasonView, RefundOut, RefundRequest, day_bound
from app.status import service as status

#: ``from`` and ``to`` as the API's schema describes them
_BOUND: dict[str, Any] = {
    "max_length": 40,
    "description": "a day (2026-12-01: in the shop's time zone; `to` includes it) "
    "or an RFC 3339 instant (without an offset: UTC)",
}


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
        return RefundOut.of_refund(refund, await service.reason_label(db, refund))

    @get("/refunds")
    async def list_refunds(
        self,
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        caller: NamedDependency[Principal],
        reason_code: Annotated[str | None, QueryParameter(name="reasonCode", max_length=40)] = None,
        q: Annotated[str | None, QueryParameter(name="q", max_length=200)] = None,
        since: Annotated[str | None, QueryParameter(name="from", **_BOUND)] = None,
        until: Annotated[str | None, QueryParameter(name="to", **_BOUND)] = None,
    ) -> list[RefundOut]:
        """The caller's refunds; staff see everyone's and may filter. ``from`` and ``to``
        take a day (``2026-12-01``, in the shop's time zone; ``to`` includes it, as on the
        staff lookup page) or an RFC 3339 instant (without an offset: UTC)."""
        unsearchable = [
            name
            for name, value in (("reason_code", reason_code), ("q", q))
            if not storable(value or "")
        ]
        if unsearchable:
            message = N_("The search contains characters we cannot search for.")
            raise InvalidInput([FieldError(name, message) for name in unsearchable])
        zone = ZoneInfo(settings.shop.timezone)
        filters = status.RefundFilter(
            customer_id=None if caller.is_staff else caller.user_id,
            reason_code=reason_code,
            q=q,
            since=_bound(since, "from", zone, end=False),
            until=_bound(until, "to", zone, end=True),
        )
        if filters.since and filters.until and filters.since >= filters.until:
            raise InvalidInput.single("to", N_("“To” is before “From”: pick a later day."))
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
        return RefundOut.of_refund(refund, await service.reason_label(db, refund))


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _bound(value: str | None, name: str, zone: ZoneInfo, *, end: bool) -> datetime | None:
    """A lookup's ``from`` or ``to`` as a UTC instant: a day, or an instant; 422 naming
    the parameter for anything else (a number is not taken for a Unix time)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if _DAY.fullmatch(text):
            return day_bound(date.fromisoformat(text), zone, end=end)
        return _instant(msgspec.convert(text, datetime), name)
    except (ValueError, msgspec.ValidationError) as exc:
        raise InvalidInput.single(
            name, N_("Use a day (2026-12-01) or a time (2026-12-01T18:30:00+09:00).")
        ) from exc


def _instant(value: datetime, name: str) -> datetime:
    """An instant as an aware UTC datetime PostgreSQL can compare: no time zone means
    UTC; a moment outside years 1-9999 once in UTC (``9999-12-31T23:00:00-05:00``) is a 422
    rather than a database error."""
    try:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInput.single(name, N_("Use a date between the years 1 and 9999.")) from exc
