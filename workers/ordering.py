"""arq worker for the ``ordering`` queue: orders follow their payment."""

from __future__ import annotations

from app.ordering import tasks
from workers.base import worker_settings

WorkerSettings = worker_settings(
    "ordering",
    [
        (tasks.ON_PAYMENT_CAPTURED, tasks.on_payment_captured),
        (tasks.ON_PAYMENT_FAILED, tasks.on_payment_failed),
        (tasks.ON_DELIVERY_DELIVERED, tasks.on_delivery_delivered),
        (tasks.ON_PAYMENT_REFUNDED, tasks.on_payment_refunded),
    ],
)
