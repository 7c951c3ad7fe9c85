"""Refund pages: the customer's form and live refund page, the staff lookup, the admin
list of reasons."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.access import access
from app.platform.db import read_only
from app.platform.errors import Conflict, FieldError, InvalidInput, Unavailable
from app.platform.forms import form_again
from app.platform.i18n import N_, plain_amount, translate
from app.platform.partners import PartnerBreakers, refusal_message
from app.platform.pubsub import Broadcaster
from app.platform.security import Principal
from app.platform.settings import Settings
from app.platform.sse import channel_updates, sse
from app.platform.web import fragment, notice_for, page, redirect, take_notice
from app.refund import service
from app.refund.schemas import day_bound
from app.status import service as status
from app.words import status_label

MAX_FORM_TEXT = 2000


class RefundPages(Controller):
    """What a customer sees."""

    opt = access("customer")

    @get("/orders/{order_id:uuid}/refund")
    async def form(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        customer: NamedDependency[Principal],
    ) -> Any:
        why_not = await service.eligibility(db, settings, order_id, customer.user_id)
        context = await _form_context(db, order_id, customer, why_not)
        return page(request, "refund/form.html", form={}, errors={}, **context)

    @post("/orders/{order_id:uuid}/refund")
    async def file(
        self,
        request: Request[Any, Any, Any],
        order_id: FromPath[uuid.UUID],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        customer: NamedDependency[Principal],
        breakers: NamedDependency[PartnerBreakers],
    ) -> Any:
        form = {
            "reason_code": str(data.get("reason_code", ""))[:40],
            "reason": str(data.get("reason", ""))[:MAX_FORM_TEXT],
        }
        command = service.FileRefund(
            customer.user_id, order_id, form["reason_code"], form["reason"]
        )
        try:
            refund = await service.file_refund(db, settings, command, gate=breakers)
        except (InvalidInput, Unavailable) as exc:
            context = await _form_context(db, order_id, customer, None)
            return form_again(request, "refund/form.html", form, exc, busy=_refunds_busy, **context)
        except Conflict as exc:  # no longer refundable: say why instead of the form
            context = await _form_context(db, order_id, customer, exc.detail)
            return form_again(request, "refund/form.html", form, {}, status_code=409, **context)
        return redirect(request, f"/refunds/{refund.id}")

    @get("/refunds/{refund_id:uuid}")
    async def refund_page(
        self,
        request: Request[Any, Any, Any],
        refund_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
    ) -> Any:
        view = await status.refund_view(db, refund_id, customer.user_id)
        refused = take_notice(request, _refund_path(refund_id))  # a withdrawal refused
        return page(request, "refund/refund.html", refund=view, error=refused)

    @get("/refunds/{refund_id:uuid}/stream")
    async def stream(
        self,
        request: Request[Any, Any, Any],
        refund_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
        session_factory: NamedDependency[async_sessionmaker[AsyncSession]],
        broadcaster: NamedDependency[Broadcaster],
    ) -> ServerSentEvent:
        """The refund page's live part. It listens on the order's channel: every refund
        change also changes its order's view, which is what the projector announces."""
        view = await status.refund_view(db, refund_id, customer.user_id)
        template = fragment(request, "refund/_refund_live.html")

        async def render(_: object) -> ServerSentEventMessage:
            async with read_only(session_factory) as session:
                fresh = await status.refund_view(session, refund_id, customer.user_id)
            html = template.render(refund=fresh, live=True)
            return ServerSentEventMessage(data=html, event="refund", id=str(fresh.version))

        return sse(channel_updates(broadcaster, status.order_channel(view.order_id)), render)

    @post("/refunds/{refund_id:uuid}/cancel")
    async def withdraw(
        self,
        request: Request[Any, Any, Any],
        refund_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        customer: NamedDependency[Principal],
    ) -> Any:
        try:
            await service.withdraw(db, refund_id, customer.user_id)
        except Conflict as exc:
            # told on the refund's own page: a reload there sends no withdrawal again
            notice_for(request, _refund_path(refund_id), exc.detail)
        return redirect(request, _refund_path(refund_id))


def _refund_path(refund_id: uuid.UUID) -> str:
    return f"/refunds/{refund_id}"


async def _form_context(
    db: AsyncSession, order_id: uuid.UUID, customer: Principal, why_not: str | None
) -> dict[str, Any]:
    """What the refund form shows besides the form: the order, the reasons to pick from,
    and why the order cannot be refunded (``None`` when it can)."""
    view = await status.order_view(db, order_id, customer.user_id)
    return {
        "order": status.OrderDocument.of(view.doc),
        "reasons": await service.reasons(db),
        "why_not": why_not,
    }


def _refunds_busy(retry_after: int) -> str:
    return refusal_message(retry_after, "refunds")


# -- staff lookup -------------------------------------------------------------------------


def _calendar_day(value: str | None) -> date | None:
    """``YYYY-MM-DD``, as the form's date field sends it; anything else, None."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None


def _day(value: str | None, zone: ZoneInfo, *, end: bool = False) -> datetime | None:
    """The form's day → the lookup's bound (``day_bound``); no day, no bound."""
    day = _calendar_day(value)
    return None if day is None else day_bound(day, zone, end=end)


def unreadable_days(params: dict[str, str | None]) -> dict[str, str]:
    """The bounds given that are no day (a link typed by hand: the date field sends
    ``YYYY-MM-DD`` or nothing), by field: said, rather than the filter quietly dropped."""
    errors = {}
    for name in ("from", "to"):
        value = params.get(name)
        if value and _calendar_day(value) is None:
            errors[name] = N_("Pick a day (YYYY-MM-DD).")
    return errors


def filter_problems(params: dict[str, str | None], filters: status.RefundFilter) -> dict[str, str]:
    """What is wrong with the lookup's or the export's bounds, by field: a bound that is
    no day, or a "to" before "from" (the export downloaded an empty file for it)."""
    errors = unreadable_days(params)
    if filters.since and filters.until and filters.since >= filters.until:
        errors["to"] = N_("“To” is before “From”: pick a later day.")
    return errors


def lookup_filter(settings: Settings, params: dict[str, str | None]) -> status.RefundFilter:
    """The lookup's and the export's filters from the query: each bound a day in the
    shop's time zone, text without NUL bytes and cut to what the columns hold."""
    zone = ZoneInfo(settings.shop.timezone)
    return status.RefundFilter(
        reason_code=(params.get("reason") or "").replace("\x00", "")[:40] or None,
        q=(params.get("q") or "").replace("\x00", "").strip()[:200] or None,
        since=_day(params.get("from"), zone),
        until=_day(params.get("to"), zone, end=True),
    )


class StaffRefundPages(Controller):
    opt = access("staff")
    path = "/staff/refunds"

    @get("/")
    async def lookup(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        staff: NamedDependency[Principal],
        reason: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
        to: FromQuery[str | None] = None,
    ) -> Any:
        params = {"reason": reason, "q": q, "from": request.query_params.get("from"), "to": to}
        filters = lookup_filter(settings, params)
        errors = filter_problems(params, filters)
        stats = await status.refund_stats(db, filters)
        peak = max((s.count for s in stats), default=0)
        return page(
            request,
            "refund/lookup.html",
            status_code=422 if errors else 200,
            errors=errors,
            params=params,
            reasons=await service.reasons(db, include_inactive=True),
            refunds=await status.refund_views(db, filters, limit=500),
            stats=stats,
            peak=peak,
            query=request.url.query,
        )

    @get("/export.csv")
    async def export(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        staff: NamedDependency[Principal],
    ) -> Response[str]:
        params = {k: request.query_params.get(k) for k in ("reason", "q", "from", "to")}
        filters = lookup_filter(settings, params)
        if problems := filter_problems(params, filters):
            raise InvalidInput([FieldError(name, why) for name, why in problems.items()])
        rows = await status.refund_views(db, filters, limit=100_000)
        zone = ZoneInfo(settings.shop.timezone)
        buffer = io.StringIO()
        buffer.write("\ufeff")  # a BOM, so Excel reads the file as UTF-8 (Korean text)
        writer = csv.writer(buffer)
        writer.writerow([_csv_safe(translate(title)) for title in CSV_COLUMNS])
        for r in rows:
            cells = [
                str(r.refund_id),
                str(r.order_id),
                r.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),  # Excel reads it
                translate(status_label(r.status)),
                r.reason_code,
                translate(r.reason_label),
                r.reason,
                plain_amount(r.amount, r.currency),
                r.currency,
            ]
            writer.writerow([_csv_safe(cell) for cell in cells])
        return Response(
            buffer.getvalue(),
            media_type="text/csv",  # Litestar adds the charset (utf-8)
            headers={"Content-Disposition": 'attachment; filename="refunds.csv"'},
        )

    @get("/{refund_id:uuid}")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        refund_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        staff: NamedDependency[Principal],
    ) -> Any:
        view = await status.refund_view(db, refund_id, None)
        order = await status.any_order_view(db, view.order_id)
        return page(
            request,
            "refund/staff_detail.html",
            refund=view,
            for_staff=True,  # the customer's own controls and words are not staff's
            order=status.OrderDocument.of(order.doc) if order else None,
            version=order.version if order else 0,
        )


#: the export's columns, in the visitor's language
CSV_COLUMNS = (
    N_("Refund ID"),
    N_("Order ID"),
    N_("Filed"),
    N_("Status"),
    N_("Reason code"),
    N_("Reason"),
    N_("Text"),
    N_("Amount"),
    N_("Currency"),
)


def _csv_safe(text: str) -> str:
    """Neutralise spreadsheet formulas in any cell (CSV injection): customers' words,
    admins' labels, everything - a spreadsheet would run a cell starting with these."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# -- admin: the reasons -------------------------------------------------------------------


class ReasonAdminPages(Controller):
    opt = access("admin")
    path = "/admin/reasons"

    @get("/")
    async def reasons(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        admin: NamedDependency[Principal],
        edit: FromQuery[str | None] = None,
    ) -> Any:
        """``?edit=code`` fills the form with that reason as it is, so saving changes only
        what the admin changed."""
        reasons = await service.reasons(db, include_inactive=True)
        form: dict[str, str] = {"active": "1"}
        chosen = next((r for r in reasons if r.code == edit), None)
        if chosen is not None:
            form = {
                "code": chosen.code,
                "label": chosen.label,
                "position": str(chosen.position),
                "requires_text": "1" if chosen.requires_text else "",
                "active": "1" if chosen.active else "",
            }
        return page(request, "refund/reasons.html", reasons=reasons, errors={}, form=form)

    @post("/")
    async def save(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
        admin: NamedDependency[Principal],
    ) -> Any:
        form = {
            k: str(data.get(k, ""))[:200]
            for k in ("code", "label", "position", "requires_text", "active")
        }
        try:
            await service.save_reason(
                db,
                admin,
                code=form["code"],
                label=form["label"],
                requires_text=data.get("requires_text") == "1",
                active=data.get("active") == "1",
                position=form["position"],
            )
        except InvalidInput as exc:
            reasons = await service.reasons(db, include_inactive=True)
            return form_again(request, "refund/reasons.html", form, exc, reasons=reasons)
        return redirect(request, "/admin/reasons")
