"""arq workers, one module per queue. ``pizzeria worker QUEUE`` runs one."""

from __future__ import annotations

import importlib

from app.platform.queues import QUEUES as QUEUES  # one worker module per queue


def settings_for(queue: str) -> type:
    if queue not in QUEUES:
        raise KeyError(queue)
    module = importlib.import_module(f"workers.{queue}")
    return module.WorkerSettings  # type: ignore[no-any-return]
