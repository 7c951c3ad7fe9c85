"""The partner simulator page: staff set sandbox latency, errors and outages and watch the
breakers react."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, URLEncodedBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.operations import service, watchdog
from app.platform import deadletters
from app.platform.access import access
from app.platform.errors import InvalidInput
from app.platform.forms import form_again, scoped_errors
from app.platform.partners import PartnerBreakers
from app.platform.redis import create_job_pool
from app.platform.security import Principal
from app.platform.settings import Settings
from app.platform.web import page, redirect


async def _context(settings: Settings, breakers: PartnerBreakers) -> dict[str, Any]:
    return {"knobs": await service.partner_knobs(settings), "breakers": await breakers.states()}


class PartnerPages(Controller):
    opt = access("staff")
    path = "/staff/partners"

    @get("/")
    async def simulator(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        staff: NamedDependency[Principal],
        breakers: NamedDependency[PartnerBreakers],
    ) -> Any:
        return page(
            request, "operations/partners.html", errors={}, **await _context(settings, breakers)
        )

    @get("/breakers")
    async def breakers(
        self,
        request: Request[Any, Any, Any],
        staff: NamedDependency[Principal],
        breakers: NamedDependency[PartnerBreakers],
    ) -> Any:
        """Fragment polled every two seconds by the simulator page."""
        return page(request, "operations/_breakers.html", breakers=await breakers.states())

    @post("/{partner:str}")
    async def set_partner(
        self,
        request: Request[Any, Any, Any],
        partner: FromPath[str],
        data: URLEncodedBody[dict[str, str]],
        settings: NamedDependency[Settings],
        staff: NamedDependency[Principal],
        breakers: NamedDependency[PartnerBreakers],
        db: NamedDependency[AsyncSession],
    ) -> Any:
        form = {
            "latency_ms": data.get("latency_ms", ""),
            "error_rate": data.get("error_rate", ""),
            "down": data.get("down", "0"),
        }
        try:
            await service.change_knobs(db, settings, staff, partner, form)
        except InvalidInput as exc:
            # two partners' forms on one page: each message names its partner's form
            errors = scoped_errors(partner, exc, form)
            context = await _context(settings, breakers)
            return form_again(
                request, "operations/partners.html", form, errors, typed_for=partner, **context
            )
        return redirect(request, "/staff/partners")


class PipelinePages(Controller):
    """Admins: the jobs parked as dead letters (retry each after fixing its cause), the
    reconciler's log and the watchdog's stuck work."""

    opt = access("admin")
    path = "/admin/events"

    @get("/")
    async def overview(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        admin: NamedDependency[Principal],
    ) -> Any:
        return page(
            request,
            "operations/events.html",
            form={},
            errors={},
            discard_for=None,
            **await _events_context(db, settings),
            retried=request.query_params.get("retried"),
            discarded=request.query_params.get("discarded"),
        )

    @post("/dead/{letter_id:int}/retry")
    async def retry(
        self,
        request: Request[Any, Any, Any],
        letter_id: FromPath[int],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        admin: NamedDependency[Principal],
    ) -> Any:
        audit.record(db, admin, "event.retry", f"dead-letter:{letter_id}")
        jobs = await create_job_pool(settings, retries=0)
        try:
            await deadletters.retry(db, jobs, letter_id, f"admin {admin.user_id}")
        finally:
            await jobs.aclose()
        return redirect(request, f"/admin/events?retried={letter_id}")

    @post("/dead/{letter_id:int}/discard")
    async def discard(
        self,
        request: Request[Any, Any, Any],
        letter_id: FromPath[int],
        data: URLEncodedBody[dict[str, str]],
        db: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        admin: NamedDependency[Principal],
    ) -> Any:
        """Discard a parked job, with the reason (kept on the letter and in the log)."""
        reason = str(data.get("reason", ""))[: deadletters.REASON_MAX * 2]
        audit.record(db, admin, "event.discard", f"dead-letter:{letter_id}", reason=reason)
        try:
            await deadletters.discard(db, letter_id, reason, f"admin {admin.user_id}")
        except InvalidInput as exc:
            # one form per letter on the page: the message goes next to this letter's field
            errors = scoped_errors(letter_id, exc, ["reason"])
            return form_again(
                request,
                "operations/events.html",
                {"reason": reason},
                errors,
                discard_for=letter_id,
                **await _events_context(db, settings),
            )
        return redirect(request, f"/admin/events?discarded={letter_id}")


async def _events_context(db: AsyncSession, settings: Settings) -> dict[str, Any]:
    """What the dead-letter page shows besides the form."""
    return {
        "letters": await deadletters.active(db),
        "actions": await deadletters.recent_actions(db),
        "stalled": await watchdog.stalled(db, settings.pipeline),
    }
