"""arq worker for the ``delivery`` queue: kitchen tickets and the delivery partner."""

from __future__ import annotations

from typing import Any, cast

from arq.cron import CronJob, cron

from app.delivery import reconcile, tasks
from app.delivery.gateway import HttpCourierGateway
from app.delivery.tasks import CourierContext
from app.platform.settings import get_settings
from app.platform.worker import WorkerContext
from workers.base import partner_job_timeout, worker_settings
from workers.context import courier_context


async def _open_gateway(ctx: dict[str, Any]) -> None:
    base = cast(WorkerContext, ctx)
    ctx.update(courier_context(base, HttpCourierGateway.from_settings(base["settings"])))


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
        (tasks.CLOSE_RETURN_PICKUP, tasks.close_return_pickup),
    ],
    timeout=partner_job_timeout(get_settings()),
    on_startup=_open_gateway,
    on_shutdown=_close_gateway,
)


async def _reconcile(ctx: dict[str, Any]) -> dict[str, int]:
    return await reconcile.reconcile(cast(CourierContext, ctx))  # filled by _open_gateway


def _reconciliation() -> CronJob:
    """Ask the partner about silent pickups every few seconds (see ``app.delivery.reconcile``).
    ``unique``: replicas compute the same job id per run, so one of them runs it; and
    each run claims its pickups, so even overlapping runs never ask twice."""
    partners = get_settings().partners
    every = min(max(partners.courier_reconcile_every_seconds, 1), 60)
    return cron(
        _reconcile,
        name=reconcile.RECONCILE,
        second=set(range(0, 60, every)),
        unique=True,
        timeout=max(30.0, partners.timeout_seconds * 4),
        keep_result=60,
    )


WorkerSettings.cron_jobs = [_reconciliation()]  # type: ignore[attr-defined]
