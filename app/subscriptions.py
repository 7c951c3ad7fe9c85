"""Who reacts to which event: the wiring between contexts, in one place.

The relay enqueues one arq job per (event, subscriber) on the subscriber's queue. The
wiring names event contracts (classes); the relay routes by their wire names, which are
what the outbox rows carry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from app.coupon import events as coupon_events
from app.coupon import tasks as coupon
from app.delivery import events as delivery_events
from app.delivery import tasks as delivery
from app.delivery.events import (
    CourierAssigned,
    CourierRequested,
    DeliveryAdvanced,
    DeliveryCancelled,
    DeliveryCreated,
    DeliveryDelivered,
    DeliveryMoveUndone,
    DeliveryReturnCancelled,
    DeliveryReturned,
    DeliveryReturnRequested,
)
from app.ordering import events as ordering_events
from app.ordering import service as ordering_service
from app.ordering import tasks as ordering
from app.ordering.events import (
    OrderCancelled,
    OrderFulfilled,
    OrderPaid,
    OrderPaymentFailed,
    OrderPlaced,
    OrderRefunded,
)
from app.payment import events as payment_events
from app.payment import tasks as payment
from app.payment.events import PaymentCaptured, PaymentFailed, PaymentRefunded, PaymentVoided
from app.platform.events import DomainEvent, Event
from app.platform.relay import Subscriber, Subscriptions
from app.platform.uow import FollowUp, FollowUps, Prepared, Reaction, Reactions
from app.refund import events as refund_events
from app.refund import tasks as refund
from app.refund.events import RefundCancelled, RefundCompleted, RefundRequested

#: a follow-up's work, given the ``ctx`` of the worker that runs it: True when done
FollowUpWork = Callable[[Any, Event], Awaitable[bool]]
#: readying a reaction to an event about to be recorded, given the ``ctx`` of the worker
#: that records it and the event its job handles; and giving back what a try readied
PrepareWork = Callable[[Any, Event], Awaitable[Prepared | None]]
ReleaseWork = Callable[[Any, Event], Awaitable[bool]]

CREATE_DELIVERY = Subscriber("delivery", delivery.CREATE)
CAPTURE_PAYMENT = Subscriber("payment", payment.CAPTURE)

#: every event the contexts emit
EVENTS: tuple[type[DomainEvent], ...] = (
    *ordering_events.EVENTS,
    *payment_events.EVENTS,
    *delivery_events.EVENTS,
    *coupon_events.EVENTS,
    *refund_events.EVENTS,
)

WIRING: Mapping[type[DomainEvent], Sequence[Subscriber]] = {
    # no status job: the unit of work that records an event projects it (see
    # ``app.status.projector``); an event only the read models need has no subscriber
    OrderPlaced: [CAPTURE_PAYMENT],  # enqueued where it is recorded: ENQUEUED_AFTER_COMMIT
    PaymentCaptured: [Subscriber("ordering", ordering.ON_PAYMENT_CAPTURED)],
    PaymentFailed: [Subscriber("ordering", ordering.ON_PAYMENT_FAILED)],
    PaymentVoided: [],
    OrderPaid: [CREATE_DELIVERY],  # followed up where it is recorded: AFTER_COMMIT below
    OrderPaymentFailed: [],
    OrderCancelled: [Subscriber("payment", payment.VOID)],
    OrderFulfilled: [],
    DeliveryCreated: [],  # the job that created it asks for the rider (delivery.create)
    CourierRequested: [],
    CourierAssigned: [],
    DeliveryAdvanced: [Subscriber("delivery", delivery.NOTIFY_READY)],
    DeliveryMoveUndone: [],
    DeliveryDelivered: [
        Subscriber("ordering", ordering.ON_DELIVERY_DELIVERED),
        Subscriber("coupon", coupon.ISSUE),
    ],
    DeliveryCancelled: [Subscriber("delivery", delivery.WITHDRAW_COURIER)],
    coupon_events.CouponIssued: [],
    coupon_events.CouponRedeemed: [],
    coupon_events.CouponReinstated: [],
    coupon_events.CouponRevoked: [],
    coupon_events.CouponFlagged: [],
    # refunds (FR8 to FR12)
    RefundRequested: [Subscriber("coupon", coupon.REVOKE)],
    DeliveryReturnRequested: [Subscriber("delivery", delivery.REQUEST_RETURN_PICKUP)],
    DeliveryReturned: [
        Subscriber("payment", payment.REFUND),
        Subscriber("delivery", delivery.CLOSE_RETURN_PICKUP),
    ],
    PaymentRefunded: [
        Subscriber("refund", refund.COMPLETE),
        Subscriber("ordering", ordering.ON_PAYMENT_REFUNDED),
    ],
    RefundCompleted: [],
    OrderRefunded: [],
    RefundCancelled: [Subscriber("coupon", coupon.REINSTATE)],
    DeliveryReturnCancelled: [
        Subscriber("delivery", delivery.WITHDRAW_RETURN_PICKUP),
        Subscriber("refund", refund.CANCEL_FOR_RETURNED_TRIP),
    ],
}

#: the relay's routes: by the wire name an outbox row carries
SUBSCRIPTIONS: Subscriptions = {event.TYPE: subs for event, subs in WIRING.items()}

#: subscribers whose handler runs in the transaction that records the event
#: (``app.platform.uow.Reaction``): the order is paid, or refused, in the same commit as
#: its payment's outcome, a job and a relay hop fewer per order. The jobs stay wired
#: above, for events recorded where no reaction ran; the relay skips them otherwise.
IN_TRANSACTION: Mapping[type[DomainEvent], Sequence[Reaction]] = {
    PaymentCaptured: [Reaction(ordering.ON_PAYMENT_CAPTURED, ordering_service.on_payment_captured)],
    PaymentFailed: [Reaction(ordering.ON_PAYMENT_FAILED, ordering_service.on_payment_failed)],
}
REACTIONS: Reactions = {event.TYPE: reactions for event, reactions in IN_TRANSACTION.items()}

#: subscribers' jobs that the process recording the event runs itself right after its
#: commit (``app.platform.uow.FollowUp``), given its ``ctx``: the payment worker, which
#: made the order paid, asks for the rider and saves the kitchen's ticket, a job and a
#: relay hop fewer per order. Only a process with the work's clients installs them
#: (``workers.payment``); the relay leaves a followed-up subscriber out, and hands over
#: whatever a follow-up could not finish (``EVENT_FOLLOW_UP_SECONDS``).
AFTER_COMMIT: Mapping[type[DomainEvent], Sequence[tuple[Subscriber, FollowUpWork]]] = {
    OrderPaid: [(CREATE_DELIVERY, delivery.create_after_payment)],
}

#: what the delivery context readies before the capture that makes the order paid is
#: recorded, to react in that very transaction (``app.platform.uow.Prepared``): the
#: payment worker books the rider right after the charge, and the kitchen's ticket is
#: saved with the capture, one commit, projection and publish instead of two. The
#: follow-up above is what is left when the partner cannot be asked then (it asks
#: again, or hands the event to the delivery job); the second function releases a rider
#: booked by a capture that died before recording, for an order cancelled meanwhile.
#: Given the payment worker's ``ctx`` (``workers.context.ready_with_capture``).
WITH_CAPTURE: tuple[PrepareWork, ReleaseWork] = (
    delivery.book_rider_with_capture,
    delivery.release_rider_of_unpaid,
)

#: subscribers whose job the process recording the event enqueues itself right after the
#: commit (``app.platform.uow.FollowUp`` with no work of its own): the web hands the
#: placed order to the payment worker, instead of a ``NOTIFY`` waking the relay to claim
#: the row in a transaction and enqueue it (a relay hop and a transaction fewer per
#: order, and sooner). The outbox row names the job, so the relay leaves it out, and the
#: reconciler hands it over if the web died between its commit and the enqueue or Redis
#: refused it (``EVENT_FOLLOW_UP_SECONDS``).
ENQUEUED_AFTER_COMMIT: Mapping[type[DomainEvent], Sequence[Subscriber]] = {
    OrderPlaced: [CAPTURE_PAYMENT],
}


def enqueued_after_commit() -> FollowUps:
    """``ENQUEUED_AFTER_COMMIT`` as the unit of work takes it (``uow.follow_up_after_commit``)."""
    return {
        event.TYPE: [FollowUp(sub) for sub in subs] for event, subs in ENQUEUED_AFTER_COMMIT.items()
    }
