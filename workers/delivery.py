"""arq worker for the ``delivery`` queue: kitchen tickets and the delivery partner."""

from __future__ import annotations

from typing import Any

from app.breakers import courier_breaker
from app.delivery import tasks
from app.delivery.gateway import HttpCourierGateway
from app.platform.settings import get_settings
from workers.base import partner_job_timeout, worker_settings


async def _open_gateway(ctx: dict[str, Any]) -> None:
    ctx["courier_gateway"] = HttpCourierGateway.from_settings(ctx["settings"])
    ctx["courier_breaker"] = courier_breaker(ctx["redis"], ctx["settings"])


async def _close_gateway(ctx: dict[str, Any]) -> None:
    await ctx["courier_gateway"].aclose()


WorkerSettings = worker_settings(
    "delivery",
    [
        (tasks.CREATE, tasks.create),
        (tasks.REQUEST_COURIER, tasks.request_courier),
        (tasks.NOTIFY_READY, tasks.notify_ready),
        (tasks.WITHDRAW_COURIER, tasks.withdraw_courier),
        (tasks.REQUEST_RETURN_PICKUP, tasks.request_return_pickup),
        (tasks.WITHDRAW_RETURN_PICKUP, tasks.withdraw_return_pickup),
    ],
    timeout=partner_job_timeout(get_settings()),
    on_startup=_open_gateway,
    on_shutdown=_close_gateway,
)
