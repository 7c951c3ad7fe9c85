"""arq worker for the ``payment`` queue: charges cards and voids cancelled orders."""

from __future__ import annotations

from typing import Any, cast

from app.payment import tasks
from app.payment.provider import HttpPaymentProvider
from app.platform.settings import get_settings
from app.platform.worker import WorkerContext
from workers.base import partner_job_timeout, worker_settings
from workers.context import payment_context


async def _open_provider(ctx: dict[str, Any]) -> None:
    base = cast(WorkerContext, ctx)
    ctx.update(payment_context(base, HttpPaymentProvider.from_settings(base["settings"])))


async def _close_provider(ctx: dict[str, Any]) -> None:
    await ctx["payment_provider"].aclose()


WorkerSettings = worker_settings(
    "payment",
    [(tasks.CAPTURE, tasks.capture), (tasks.VOID, tasks.void), (tasks.REFUND, tasks.refund)],
    timeout=partner_job_timeout(get_settings()),
    on_startup=_open_provider,
    on_shutdown=_close_provider,
)
