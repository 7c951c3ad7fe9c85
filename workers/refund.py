"""arq worker for the ``refund`` queue: completes refunds once the money is back, and
cancels those whose return trip the partner cancelled."""

from __future__ import annotations

from app.refund import tasks
from workers.base import worker_settings

WorkerSettings = worker_settings(
    "refund",
    [
        (tasks.COMPLETE, tasks.complete),
        (tasks.CANCEL_FOR_RETURNED_TRIP, tasks.cancel_for_returned_trip),
    ],
)
