"""arq worker for the ``payment`` queue: charges cards at the payment provider."""

from __future__ import annotations

from typing import Any

from app.payment import tasks
from app.payment.provider import HttpPaymentProvider
from workers.base import worker_settings


async def _open_provider(ctx: dict[str, Any]) -> None:
    ctx["payment_provider"] = HttpPaymentProvider.from_settings(ctx["settings"])


async def _close_provider(ctx: dict[str, Any]) -> None:
    await ctx["payment_provider"].aclose()


WorkerSettings = worker_settings(
    "payment",
    [(tasks.CAPTURE, tasks.capture)],
    on_startup=_open_provider,
    on_shutdown=_close_provider,
)
