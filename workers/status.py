"""arq worker for the ``status`` queue: the projector that keeps the read models."""

from __future__ import annotations

from app.status import tasks
from workers.base import worker_settings

WorkerSettings = worker_settings("status", [(tasks.PROJECT, tasks.project)])
