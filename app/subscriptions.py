"""Who reacts to which event: the wiring between contexts, in one place.

The relay enqueues one arq job per (event, subscriber) on the subscriber's queue.
"""

from __future__ import annotations

from app.ordering import tasks as ordering
from app.payment import tasks as payment
from app.platform.relay import Subscriber, Subscriptions
from app.status import tasks as status

PROJECT = Subscriber("status", status.PROJECT)

SUBSCRIPTIONS: Subscriptions = {
    "OrderPlaced": [Subscriber("payment", payment.CAPTURE)],
    "PaymentCaptured": [Subscriber("ordering", ordering.ON_PAYMENT_CAPTURED), PROJECT],
    "PaymentFailed": [Subscriber("ordering", ordering.ON_PAYMENT_FAILED), PROJECT],
    "OrderPaid": [PROJECT],
    "OrderPaymentFailed": [PROJECT],
}
