"""Who reacts to which event: the wiring between contexts, in one place.

The relay enqueues one arq job per (event, subscriber) on the subscriber's queue.
"""

from __future__ import annotations

from app.coupon import tasks as coupon
from app.delivery import tasks as delivery
from app.ordering import tasks as ordering
from app.payment import tasks as payment
from app.platform.relay import Subscriber, Subscriptions
from app.refund import tasks as refund
from app.status import tasks as status

PROJECT = Subscriber("status", status.PROJECT)

SUBSCRIPTIONS: Subscriptions = {
    "OrderPlaced": [Subscriber("payment", payment.CAPTURE)],
    "PaymentCaptured": [Subscriber("ordering", ordering.ON_PAYMENT_CAPTURED), PROJECT],
    "PaymentFailed": [Subscriber("ordering", ordering.ON_PAYMENT_FAILED), PROJECT],
    "PaymentVoided": [PROJECT],
    "OrderPaid": [Subscriber("delivery", delivery.CREATE), PROJECT],
    "OrderPaymentFailed": [PROJECT],
    "OrderCancelled": [Subscriber("payment", payment.VOID), PROJECT],
    "OrderFulfilled": [PROJECT],
    "DeliveryCreated": [Subscriber("delivery", delivery.REQUEST_COURIER), PROJECT],
    "CourierRequested": [Subscriber("delivery", delivery.NOTIFY_READY), PROJECT],
    "CourierAssigned": [PROJECT],
    "DeliveryAdvanced": [Subscriber("delivery", delivery.NOTIFY_READY), PROJECT],
    "DeliveryMoveUndone": [PROJECT],
    "DeliveryDelivered": [
        Subscriber("ordering", ordering.ON_DELIVERY_DELIVERED),
        Subscriber("coupon", coupon.ISSUE),
        PROJECT,
    ],
    "DeliveryCancelled": [Subscriber("delivery", delivery.WITHDRAW_COURIER), PROJECT],
    "CouponIssued": [PROJECT],
    "CouponRedeemed": [PROJECT],
    "CouponReinstated": [PROJECT],
    "CouponRevoked": [PROJECT],
    "CouponFlagged": [PROJECT],
    # refunds (FR8 to FR12)
    "RefundRequested": [Subscriber("coupon", coupon.REVOKE), PROJECT],
    "DeliveryReturnRequested": [Subscriber("delivery", delivery.REQUEST_RETURN_PICKUP), PROJECT],
    "DeliveryReturned": [
        Subscriber("payment", payment.REFUND),
        Subscriber("delivery", delivery.CLOSE_RETURN_PICKUP),
        PROJECT,
    ],
    "PaymentRefunded": [
        Subscriber("refund", refund.COMPLETE),
        Subscriber("ordering", ordering.ON_PAYMENT_REFUNDED),
        PROJECT,
    ],
    "RefundCompleted": [PROJECT],
    "OrderRefunded": [PROJECT],
    "RefundCancelled": [Subscriber("coupon", coupon.REINSTATE), PROJECT],
    "DeliveryReturnCancelled": [Subscriber("delivery", delivery.WITHDRAW_RETURN_PICKUP), PROJECT],
}
