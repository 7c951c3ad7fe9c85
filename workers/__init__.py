"""arq workers, one module per queue. ``pizzeria worker QUEUE`` runs one."""

from __future__ import annotations

import importlib

QUEUES = ("payment", "ordering", "delivery", "coupon", "refund", "status")


def settings_for(queue: str) -> type:
    if queue not in QUEUES:
        raise KeyError(queue)
    module = importlib.import_module(f"workers.{queue}")
    return module.WorkerSettings  # type: ignore[no-any-return]
