"""arq worker for the ``payment`` queue: charges cards and voids cancelled orders.

It also makes the paid order's delivery: the rider booked right after the charge and the
kitchen's ticket saved with the capture (``app.subscriptions.WITH_CAPTURE``), or right
after the capture commits when the partner could not be asked then (the follow-ups of
``app.subscriptions.AFTER_COMMIT``). So it holds the delivery partner's client and
breaker too, and a client to hand what it could not finish to the ``delivery`` queue.
"""

from __future__ import annotations

from typing import Any, cast

from app.delivery.gateway import HttpCourierGateway
from app.payment import tasks
from app.payment.provider import HttpPaymentProvider
from app.platform.redis import create_job_client
from app.platform.settings import get_settings
from app.platform.worker import WorkerContext
from workers.base import partner_job_timeout, worker_settings
from workers.context import courier_context, follow_up, payment_context, ready_with_capture


async def _open_provider(ctx: dict[str, Any]) -> None:
    base = cast(WorkerContext, ctx)
    settings = base["settings"]
    ctx.update(payment_context(base, HttpPaymentProvider.from_settings(settings)))
    if settings.pipeline.follow_ups:
        ctx.update(courier_context(base, HttpCourierGateway.from_settings(settings)))
        ctx["follow_up_jobs"] = create_job_client(settings)
        follow_up(ctx, ctx["follow_up_jobs"])
        ready_with_capture(ctx)


async def _close_provider(ctx: dict[str, Any]) -> None:
    await ctx["payment_provider"].aclose()
    if "courier_gateway" in ctx:
        await ctx["courier_gateway"].aclose()
        await ctx["follow_up_jobs"].aclose()


WorkerSettings = worker_settings(
    "payment",
    [(tasks.CAPTURE, tasks.capture), (tasks.VOID, tasks.void), (tasks.REFUND, tasks.refund)],
    # the capture's charge, then its follow-up's pickup: a partner call more than the rest
    timeout=partner_job_timeout(get_settings()) + get_settings().partners.timeout_seconds,
    on_startup=_open_provider,
    on_shutdown=_close_provider,
)
