"""Delivery event handlers (queue ``delivery``): the ticket and the delivery partner.

Partner calls go through the ``courier`` circuit breaker; a refused or failed call is
retried later with backoff (the delivery shows "finding a rider" meanwhile), never dropped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery import service
from app.delivery.events import DeliveryChanged
from app.delivery.gateway import (
    OPEN_PICKUP_STATUSES,
    CourierGateway,
    CourierRejected,
    PickupOutcome,
)
from app.delivery.models import CourierStatus, Delivery, DeliveryStatus, ReturnPickupState
from app.ordering.events import OrderPaid, OrderPlaced
from app.platform import uow
from app.platform.breaker import CircuitBreaker
from app.platform.db import read_only
from app.platform.events import Event
from app.platform.handlers import answer_once, call_partner, event_of
from app.platform.worker import WorkerContext

log = logging.getLogger(__name__)
T = TypeVar("T")


class CourierContext(WorkerContext):
    """The delivery worker's ``ctx`` (built by ``workers.context.courier_context``)."""

    courier_gateway: CourierGateway
    courier_breaker: CircuitBreaker


CREATE = "delivery.create"
REQUEST_COURIER = "delivery.request_courier"
NOTIFY_READY = "delivery.notify_ready"
WITHDRAW_COURIER = "delivery.withdraw_courier"


async def _partner(ctx: CourierContext, call: Callable[[CourierGateway], Awaitable[T]]) -> T:
    gateway: CourierGateway = ctx["courier_gateway"]
    return await call_partner(ctx["courier_breaker"], lambda: call(gateway), ctx.get("job_try", 1))


async def create(ctx: CourierContext, raw: dict[str, Any]) -> str:
    """``OrderPaid`` → a rider asked for, then the kitchen's ticket saved with the
    pickup, in one job and one transaction (a hop and a transaction per order fewer than
    a ticket first and the rider recorded after).

    The rider is asked for under the delivery's id before the ticket exists
    (``service.delivery_id_for``), so a retry, a copy of the job and a cancel all name the
    same pickup. If the partner cannot be asked, the kitchen still gets its ticket now,
    and the retry asks for the rider (``_ask_for_rider``, as for a ticket an earlier try
    or an older release made). A cancel that came first leaves a tombstone, which the
    insert loses to: the pickup just booked is then withdrawn."""
    event = event_of(raw)
    paid = event.as_(OrderPaid)
    factory = ctx["session_factory"]
    async with read_only(factory) as session:
        delivery = await service.delivery_for_order(session, paid.order_id)
    if delivery is not None:  # an earlier try made it, or the order was cancelled first
        return await _ask_for_rider(ctx, delivery, event)
    delivery_id = service.delivery_id_for(paid.order_id)
    try:
        partner_ref = await _request_pickup(ctx, delivery_id, paid.address)
    except Exception:
        # the partner is away or refused: the kitchen cooks meanwhile
        await answer_once(factory, CREATE, event, service.create_for_paid_order)
        raise
    if await _ticket_with_pickup(ctx, event, partner_ref):
        return "requested"
    async with read_only(factory) as session:  # a cancel's tombstone, or a copy, was first
        delivery = await service.delivery_for_order(session, paid.order_id)
    if delivery is not None and delivery.id != delivery_id:  # made by an older release
        await withdraw(ctx, delivery_id, partner_ref)
    return await _ask_for_rider(ctx, delivery, event)


async def create_after_payment(ctx: CourierContext, event: Event) -> bool:
    """``create``'s usual course, run by the payment worker right after the commit that
    made the order paid (``app.subscriptions.AFTER_COMMIT``): a job, a relay hop and a
    look-up fewer per order. The rider is asked for, then the ticket saved with the
    pickup. Every other course (the partner away or refusing, a cancel's tombstone or a
    copy first) is ``create``'s: False, or the partner's failure raised, hands the event
    to that job, which asks again under the same key and takes it from there."""
    paid = event.as_(OrderPaid)
    partner_ref = await _request_pickup(ctx, service.delivery_id_for(paid.order_id), paid.address)
    return await _ticket_with_pickup(ctx, event, partner_ref)


async def book_rider_with_capture(ctx: CourierContext, placed: Event) -> uow.Prepared | None:
    """The rider for an order the payment worker has just charged, asked for before the
    capture is recorded, so that the kitchen's ticket is saved, with its pickup, in the
    capture's own transaction (``app.subscriptions.WITH_CAPTURE``): a transaction, a
    projection and a publish per order fewer than the follow-up after its commit.

    The pickup is keyed by the delivery's id, as every other course asks for it, so a
    retry of a capture that died before recording finds the same rider, and so does the
    delivery job when a copy of the capture recorded first without one (its partner was
    away): the order is paid, and that job saves the ticket with this very rider. Only an
    order cancelled before it was paid gives the rider back (``undo``, as
    ``release_rider_of_unpaid``). None when the partner cannot be asked now: the
    follow-up after the commit (and then the delivery job) asks again."""
    order = placed.as_(OrderPlaced)
    delivery_id = service.delivery_id_for(order.order_id)
    try:
        partner_ref = await _request_pickup(ctx, delivery_id, order.address)
    except Exception as exc:  # arq's Retry included: the partner away, its breaker open
        log.info("rider for %s not booked with the capture (%r): after it", order.order_id, exc)
        return None
    made = False

    async def ticket(session: AsyncSession, paid: Event) -> None:
        nonlocal made
        made = await service.create_for_paid_order(session, paid, partner_ref) is not None

    async def undo() -> bool:
        return not made and await release_rider_of_unpaid(ctx, placed)

    return uow.Prepared({OrderPaid.TYPE: [uow.Reaction(CREATE, ticket)]}, undo)


async def release_rider_of_unpaid(ctx: CourierContext, placed: Event) -> bool:
    """An order cancelled before it was paid (its ticket a cancel's tombstone): a rider
    that a try of the capture booked for it (``book_rider_with_capture``) is released,
    True. Anything else keeps it: a live ticket holds it, and with no ticket at all the
    order was made paid (a cancel always leaves a ticket or its tombstone), so the
    delivery job saves the ticket with it, or the capture may still record the order
    paid. The partner away raises: the payment job is retried, and asks again."""
    order_id = placed.as_(OrderPlaced).order_id
    async with read_only(ctx["session_factory"]) as session:
        ticket = await service.delivery_for_order(session, order_id)
    if ticket is None or ticket.status != DeliveryStatus.cancelled:
        return False
    delivery_id = service.delivery_id_for(order_id)
    found = await _pickup_under_key(ctx, delivery_id)
    if found is None or found.status not in OPEN_PICKUP_STATUSES:
        return False
    await withdraw(ctx, delivery_id, found.partner_ref)
    return True


async def _ticket_with_pickup(ctx: CourierContext, event: Event, partner_ref: str) -> bool:
    """The kitchen's ticket saved with its pickup, once per ``OrderPaid``; False when a
    cancel's tombstone or a copy of the job was first (look it up then)."""
    created = await answer_once(
        ctx["session_factory"],
        CREATE,
        event,
        lambda session, cause: service.create_for_paid_order(session, cause, partner_ref),
    )
    return created is not None


async def _request_pickup(ctx: CourierContext, delivery_id: uuid.UUID, address: str) -> str:
    """Ask the partner for a rider for the delivery (idempotent by its key): the pickup."""
    callback = f"{ctx['settings'].public_url}/webhooks/courier"
    outcome = await _partner(
        ctx,
        lambda gateway: gateway.request_pickup(
            reference=service.partner_reference(delivery_id),
            address=address,
            callback_url=callback,
            idempotency_key=_pickup_key(delivery_id),
        ),
    )
    return outcome.partner_ref


async def request_courier(ctx: CourierContext, raw: dict[str, Any]) -> str:
    """A rider for a ``DeliveryCreated`` (jobs queued before ``create`` asked itself)."""
    event = event_of(raw)
    delivery_id = event.as_(DeliveryChanged).delivery_id
    async with read_only(ctx["session_factory"]) as session:
        delivery = await service.get(session, delivery_id)
    return await _ask_for_rider(ctx, delivery, event)


async def _ask_for_rider(ctx: CourierContext, delivery: Delivery | None, event: Event) -> str:
    if delivery is None:
        return "skipped"
    delivery_id = delivery.id
    if delivery.status == DeliveryStatus.cancelled:
        # a try of this job asked, then failed to withdraw (or died before recording)
        partner_ref = delivery.partner_ref or await _booked_pickup(ctx, delivery_id, event)
        if partner_ref:
            await withdraw(ctx, delivery_id, partner_ref)
            return "withdrawn"
        return "cancelled"
    if delivery.courier_status != CourierStatus.unassigned:
        # a try that died after recording the pickup may not have told the partner
        # that the food is ready (mark_ready is idempotent at the partner)
        if delivery.status == DeliveryStatus.ready and delivery.partner_ref:
            await _mark_ready(ctx, delivery_id, delivery.partner_ref)
            return "notified"
        return "skipped"
    partner_ref = await _request_pickup(ctx, delivery_id, delivery.address)
    async with uow.transaction(ctx["session_factory"]) as session:
        status_now = await service.record_pickup_requested(session, delivery_id, partner_ref, event)
    if status_now == DeliveryStatus.cancelled:
        await withdraw(ctx, delivery_id, partner_ref)
        return "withdrawn"
    if status_now == DeliveryStatus.ready:
        # the kitchen was faster than the partner: this job tells it (no job per
        # CourierRequested for the rare case, see app.subscriptions)
        await _mark_ready(ctx, delivery_id, partner_ref)
        return "requested, ready"
    return "requested"


async def notify_ready(ctx: CourierContext, raw: dict[str, Any]) -> str:
    """Tell the partner the food can be collected (once ready AND a rider was requested;
    a rider requested after the food was ready is told by ``request_courier``)."""
    delivery_id = event_of(raw).as_(DeliveryChanged).delivery_id
    async with read_only(ctx["session_factory"]) as session:
        delivery = await service.get(session, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.ready or not delivery.partner_ref:
        return "skipped"
    await _mark_ready(ctx, delivery_id, delivery.partner_ref)
    return "notified"


async def _mark_ready(ctx: CourierContext, delivery_id: uuid.UUID, partner_ref: str) -> None:
    await _partner(
        ctx,
        lambda gateway: gateway.mark_ready(
            partner_ref=partner_ref, idempotency_key=f"{delivery_id}:ready"
        ),
    )


async def withdraw_courier(ctx: CourierContext, raw: dict[str, Any]) -> str:
    event = event_of(raw)
    delivery_id = event.as_(DeliveryChanged).delivery_id
    async with read_only(ctx["session_factory"]) as session:
        delivery = await service.get(session, delivery_id)
    if delivery is None:
        return "nothing to withdraw"
    partner_ref = delivery.partner_ref or await _booked_pickup(ctx, delivery_id, event)
    if not partner_ref:
        return "nothing to withdraw"
    await withdraw(ctx, delivery_id, partner_ref)
    return "withdrawn"


def _pickup_key(delivery_id: uuid.UUID) -> str:
    return f"{delivery_id}:pickup"


async def _booked_pickup(ctx: CourierContext, delivery_id: uuid.UUID, cause: Event) -> str | None:
    """The delivery's pickup as the partner booked it, when we never recorded one: a try
    of ``request_courier`` can die after the partner booked the rider and before we
    stored the pickup id. Found: recorded now (so its webhooks find the delivery), and
    its id returned for withdrawing; None: the partner never booked one."""
    found = await _pickup_under_key(ctx, delivery_id)
    if found is None:
        return None
    async with uow.transaction(ctx["session_factory"]) as session:
        await service.record_pickup_requested(session, delivery_id, found.partner_ref, cause)
    log.warning(
        "pickup %s of delivery %s was booked but never recorded", found.partner_ref, delivery_id
    )
    return found.partner_ref


async def _pickup_under_key(ctx: CourierContext, delivery_id: uuid.UUID) -> PickupOutcome | None:
    """The pickup the partner booked for the delivery's key, as it is now (None: none)."""
    key = _pickup_key(delivery_id)
    return await _partner(ctx, lambda gateway: gateway.find_pickup(idempotency_key=key))


async def withdraw(
    ctx: CourierContext, delivery_id: uuid.UUID, partner_ref: str, trip: str = ""
) -> None:
    """Cancel a pickup at the partner (``trip="return-N-"`` for a refund's return trip)."""
    try:
        await _partner(
            ctx,
            lambda gateway: gateway.cancel_pickup(
                partner_ref=partner_ref, idempotency_key=f"{delivery_id}:{trip}cancel"
            ),
        )
    except CourierRejected as exc:  # e.g. already picked up: nothing left to withdraw
        log.warning("withdraw of pickup %s refused: %s", partner_ref, exc)


REQUEST_RETURN_PICKUP = "delivery.request_return_pickup"
WITHDRAW_RETURN_PICKUP = "delivery.withdraw_return_pickup"


def _trip(event: Event) -> int:
    """The return trip an event is about (events written before trips were counted: 1)."""
    return event.as_(DeliveryChanged).return_trip or 1


async def request_return_pickup(ctx: CourierContext, raw: dict[str, Any]) -> str:
    """``DeliveryReturnRequested`` → ask the partner to collect the pizzas (a refund).

    Each return trip has its own pickup. Whatever happened before (a withdrawn refund, a
    try of this job that asked the partner and then failed to withdraw), running this
    again converges: the trip's pickup exists at the partner exactly while it is wanted.
    """
    event = event_of(raw)
    delivery_id, trip = event.as_(DeliveryChanged).delivery_id, _trip(event)
    async with read_only(ctx["session_factory"]) as session:
        delivery = await service.get(session, delivery_id)
        pickup = await service.return_pickup(session, delivery_id, trip)
    if delivery is None:
        return "skipped"
    if pickup is not None:
        partner_ref, wanted = pickup.partner_ref, service.trip_wanted(delivery, trip)
    elif not service.trip_wanted(delivery, trip):
        booked = await _booked_return(ctx, delivery_id, trip)
        if booked is None:
            return "no return in progress"
        partner_ref, wanted = booked, False
    else:
        partner_ref = await _request_return(ctx, delivery_id, delivery.address, trip)
        async with uow.transaction(ctx["session_factory"]) as session:
            wanted = await service.record_return_pickup(session, delivery_id, trip, partner_ref)
    if not wanted:
        await _withdraw_return(ctx, delivery_id, trip, partner_ref)
        return "withdrawn"
    return "requested"


async def _request_return(
    ctx: CourierContext, delivery_id: uuid.UUID, address: str, trip: int
) -> str:
    callback = f"{ctx['settings'].public_url}/webhooks/courier"
    outcome = await _partner(
        ctx,
        lambda gateway: gateway.request_pickup(
            reference=service.partner_reference(delivery_id, "return"),
            address=address,
            callback_url=callback,
            idempotency_key=_return_key(delivery_id, trip),
            ready=True,  # the pizzas wait at the customer's: the rider collects them
        ),
    )
    return outcome.partner_ref


def _return_key(delivery_id: uuid.UUID, trip: int) -> str:
    return f"{delivery_id}:return-{trip}-pickup"


async def _booked_return(ctx: CourierContext, delivery_id: uuid.UUID, trip: int) -> str | None:
    """Return trip ``trip``'s pickup as the partner booked it, when we never recorded
    one: a try of ``request_return_pickup`` can die after the partner booked the rider and
    before we stored the pickup. Found: recorded now (still active, for the caller to
    withdraw); None: the partner never booked one."""
    key = _return_key(delivery_id, trip)
    found = await _partner(ctx, lambda gateway: gateway.find_pickup(idempotency_key=key))
    if found is None:
        return None
    async with uow.transaction(ctx["session_factory"]) as session:
        await service.record_return_pickup(session, delivery_id, trip, found.partner_ref)
    log.warning("return pickup %s was booked but never recorded", key)
    return found.partner_ref


async def _withdraw_return(
    ctx: CourierContext, delivery_id: uuid.UUID, trip: int, partner_ref: str
) -> None:
    """Cancel a return trip's pickup at the partner, then remember we did."""
    await withdraw(ctx, delivery_id, partner_ref, trip=f"return-{trip}-")
    async with uow.transaction(ctx["session_factory"]) as session:
        await service.settle_return_pickup(session, delivery_id, trip, ReturnPickupState.withdrawn)


async def withdraw_return_pickup(ctx: CourierContext, raw: dict[str, Any]) -> str:
    """``DeliveryReturnCancelled`` → the partner need not come (FR11). No pickup recorded
    yet: the partner is asked whether it booked one anyway (a request job that died
    before recording it); otherwise the request job withdraws it as soon as it records
    it."""
    event = event_of(raw)
    delivery_id, trip = event.as_(DeliveryChanged).delivery_id, _trip(event)
    async with read_only(ctx["session_factory"]) as session:
        pickup = await service.return_pickup(session, delivery_id, trip)
    if pickup is not None and pickup.state != ReturnPickupState.active:
        return "settled"
    partner_ref = pickup.partner_ref if pickup else await _booked_return(ctx, delivery_id, trip)
    if partner_ref is None:
        return "nothing to withdraw"
    await _withdraw_return(ctx, delivery_id, trip, partner_ref)
    return "withdrawn"


CLOSE_RETURN_PICKUP = "delivery.close_return_pickup"


async def close_return_pickup(ctx: CourierContext, raw: dict[str, Any]) -> str:
    """``DeliveryReturned`` → the pizzas are back (staff or the partner said so): a rider
    still booked for that trip at the partner is released, so the partner's record of
    the trip ends too instead of staying "assigned" forever."""
    event = event_of(raw)
    delivery_id, trip = event.as_(DeliveryChanged).delivery_id, _trip(event)
    async with read_only(ctx["session_factory"]) as session:
        pickup = await service.return_pickup(session, delivery_id, trip)
    if pickup is None or pickup.state not in (
        ReturnPickupState.active,
        ReturnPickupState.collected,
    ):
        return "settled"
    if pickup.state == ReturnPickupState.active:  # collected: the rider has them, no cancel
        partner_ref = pickup.partner_ref
        status = await _partner(ctx, lambda gateway: gateway.pickup_status(partner_ref=partner_ref))
        if status.status in OPEN_PICKUP_STATUSES:
            await withdraw(ctx, delivery_id, partner_ref, trip=f"return-{trip}-")
    async with uow.transaction(ctx["session_factory"]) as session:
        await service.settle_return_pickup(session, delivery_id, trip, ReturnPickupState.finished)
    return "closed"
