"""arq worker for the ``refund`` queue: completes refunds once the money is back."""

from __future__ import annotations

from app.refund import tasks
from workers.base import worker_settings

WorkerSettings = worker_settings("refund", [(tasks.COMPLETE, tasks.complete)])
