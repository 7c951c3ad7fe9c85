"""arq worker for the ``payment`` queue: charges cards and voids cancelled orders."""

from __future__ import annotations

from typing import Any

from app.breakers import payment_breaker
from app.payment import tasks
from app.payment.provider import HttpPaymentProvider
from app.platform.settings import get_settings
from workers.base import partner_job_timeout, worker_settings


async def _open_provider(ctx: dict[str, Any]) -> None:
    ctx["payment_provider"] = HttpPaymentProvider.from_settings(ctx["settings"])
    ctx["payment_breaker"] = payment_breaker(ctx["state_redis"], ctx["settings"])


async def _close_provider(ctx: dict[str, Any]) -> None:
    await ctx["payment_provider"].aclose()


WorkerSettings = worker_settings(
    "payment",
    [(tasks.CAPTURE, tasks.capture), (tasks.VOID, tasks.void), (tasks.REFUND, tasks.refund)],
    timeout=partner_job_timeout(get_settings()),
    on_startup=_open_provider,
    on_shutdown=_close_provider,
)
