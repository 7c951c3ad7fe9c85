"""arq worker for the ``coupon`` queue: issues coupons for delivered orders."""

from __future__ import annotations

from app.coupon import tasks
from workers.base import worker_settings

WorkerSettings = worker_settings(
    "coupon",
    [
        (tasks.ISSUE, tasks.issue),
        (tasks.REVOKE, tasks.revoke),
        (tasks.REINSTATE, tasks.reinstate),
    ],
)
