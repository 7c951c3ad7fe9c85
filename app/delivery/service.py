"""Delivery use cases: create the ticket when paid, move it, follow the partner, cancel.

Every change emits an event carrying a snapshot of the delivery, so the status projector
and the board can rebuild a card from the newest event alone.

Deliveries are read and written on the driver (``DELIVERIES``, an ``AggregateRows``):
every order's delivery is created, booked and changed by its rider's news, and the
session's flush and identity map cost more than those one-row changes. Every read of a
delivery here goes that way too, so none meets a session's older copy of one changed
in the same transaction; only the lists (pages, watchdog) read through the session.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import msgspec
from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

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
from app.delivery.models import (
    RETURN_PICKUP_MOVES,
    UNDO,
    UNDO_SECONDS,
    CourierStatus,
    Delivery,
    ReturnPickup,
    ReturnPickupState,
    stage,
)
from app.delivery.models import DeliveryStatus as DeliveryStatus  # the words of DeliveryFacts
from app.delivery.schemas import DeliveryView as DeliveryView  # what other contexts return
from app.ordering.events import OrderPaid
from app.platform.aggregate import AggregateRows, record_pending
from app.platform.db import utcnow
from app.platform.driver import Statement
from app.platform.errors import Conflict, InvalidInput, NotFound
from app.platform.events import Event
from app.platform.i18n import N_
from app.platform.uow import complete
from app.words import status_label

#: The partner webhook types we understand.
RIDER_ASSIGNED = "rider_assigned"
PICKED_UP = "picked_up"
DELIVERED = "delivered"
PARTNER_CANCELLED = "cancelled"


DELIVERIES = AggregateRows(Delivery)
#: built once (each a delivery's whole row; the locked ones to change it)
_BY_ID = DELIVERIES.select().where(Delivery.id == bindparam("delivery_id"))
_READ = Statement(_BY_ID)
_LOCK = Statement(_BY_ID.with_for_update())
_BY_ORDER = DELIVERIES.select().where(Delivery.order_id == bindparam("order_id"))
_READ_FOR_ORDER = Statement(_BY_ORDER)
_LOCK_FOR_ORDER = Statement(_BY_ORDER.with_for_update())
_LOCK_FOR_PICKUP = Statement(
    DELIVERIES.select().where(Delivery.partner_ref == bindparam("partner_ref")).with_for_update()
)


async def _read(session: AsyncSession, statement: Statement, **values: object) -> Delivery | None:
    row = await statement.fetchrow(session, values)
    return None if row is None else DELIVERIES.loaded(row)


async def _locked(session: AsyncSession, delivery_id: uuid.UUID) -> Delivery:
    delivery = await _read(session, _LOCK, delivery_id=delivery_id)
    if delivery is None:
        raise NotFound(N_("delivery not found"))
    return delivery


#: the namespace of ``delivery_id_for``
_DELIVERY_IDS = uuid.UUID("6f1c2a52-3c38-4b51-9a3e-5d1f0c7b8e21")


def delivery_id_for(order_id: uuid.UUID) -> uuid.UUID:
    """The id of an order's delivery, known before it exists: the rider is asked for
    under it (the partner's reference and idempotency key) before the ticket is saved,
    so a retry, a copy of the job and a cancel's tombstone all name the same delivery.
    (Deliveries made before this have random ids; nothing relies on the rule.)"""
    return uuid.uuid5(_DELIVERY_IDS, str(order_id))


#: built once, the values bound per call (inline values cost a cache key walk each time);
#: a Core insert on the table (the ORM's bulk insert costs three times the CPU). No
#: conflict target: the ticket and a cancel's tombstone share the id and the order id,
#: and an insert racing the other's can meet it on either index (the chaos suite's
#: partner-down phase found the primary key: a 500 on cancel)
_TICKETS = cast(Table, Delivery.__table__)
_NEW_TICKET = Statement(insert(_TICKETS).on_conflict_do_nothing().returning(_TICKETS.c.id))


async def create_for_paid_order(
    session: AsyncSession, event: Event, partner_ref: str | None = None
) -> Delivery | None:
    """``OrderPaid`` → a queued delivery (once per order; a cancel tombstone wins): the
    delivery created, None when there was one already (or its tombstone). With
    ``partner_ref``, the rider was asked for already: recorded in the same transaction.

    The ticket is made and moved (the pickup) in memory, through its state machine,
    and then saved as it stands in one insert: not inserted and then updated."""
    paid = event.as_(OrderPaid)
    now = utcnow()
    ticket = Delivery(
        id=delivery_id_for(paid.order_id),
        order_id=paid.order_id,
        customer_id=paid.customer_id,
        status=DeliveryStatus.queued,
        courier_status=CourierStatus.unassigned,
        partner_ref=None,
        rider=None,
        address=paid.address,
        items=msgspec.to_builtins(paid.items),
        paid_at=event.occurred_at,
        delivered_at=None,
        history=[stage(DeliveryStatus.queued, now)],
        return_trip=0,
        partner_checked_at=None,
        partner_eta=None,
        created_at=now,
        updated_at=now,
        version=1,
    )
    ticket.emit(DeliveryCreated)
    if partner_ref is not None:
        _pickup_requested(ticket, partner_ref)
    # saved as it stands: a later change in this transaction is an update of the row, as
    # for any ticket read from the database
    if await _NEW_TICKET.fetchrow(session, DELIVERIES.stored(ticket)) is None:
        return None  # its events go with it: nothing was saved
    record_pending(session, ticket, event)  # the row is as inserted: nothing to save
    return ticket


async def advance(
    session: AsyncSession, delivery_id: uuid.UUID, expected: str | None = None
) -> Delivery:
    """Staff moves a delivery to its next stage (kitchen, or in-house driver).

    ``expected`` is the stage the staff member saw when they pressed the button: a double
    click, a retried request or a colleague's move finds the delivery already further
    along, and must not move it a second stage (409 saying where it is now)."""
    delivery = await _locked(session, delivery_id)
    if expected is not None and expected != delivery.status:
        if delivery.status == DeliveryStatus.cancelled:  # no colleague's move: the customer's
            raise Conflict(
                N_("The customer cancelled this order; nothing was changed."),
                code="stage_moved",
            )
        raise Conflict(
            N_(
                "This delivery was already moved to %(status)s (a second click, or a "
                "colleague); nothing was changed.",
                status=status_label(delivery.status),
            ),
            code="stage_moved",
        )
    target = delivery.next_stage
    if target is None:
        raise Conflict(
            N_("A %(status)s delivery has no next stage.", status=status_label(delivery.status))
        )
    _move(delivery, target)
    await DELIVERIES.record(session, delivery)
    await complete(session)
    return delivery


async def undo_last_move(session: AsyncSession, delivery_id: uuid.UUID) -> Delivery:
    """Staff take back their last kitchen move (a mis-tap) within ``UNDO_SECONDS``; 409
    when there is none to take back, or it is too late."""
    delivery = await _locked(session, delivery_id)
    history = delivery.history or []
    current = delivery.status
    if current not in UNDO or not history or history[-1]["status"] != current.value:
        raise Conflict(N_("There is no kitchen move to undo on this delivery."))
    moved_at = datetime.fromisoformat(history[-1]["at"])
    if utcnow() - moved_at > timedelta(seconds=UNDO_SECONDS):
        raise Conflict(
            N_("A move can only be undone within %(seconds)s seconds.", seconds=UNDO_SECONDS)
        )
    delivery.undo_move()
    delivery.emit(DeliveryMoveUndone)
    await DELIVERIES.record(session, delivery)
    await complete(session)
    return delivery


def _move(delivery: Delivery, target: DeliveryStatus) -> None:
    """A step along the way, told as ``DeliveryAdvanced`` (``DeliveryDelivered`` at the
    door, which ordering and coupon react to)."""
    delivery.move_to(target)
    delivery.emit(DeliveryDelivered if target is DeliveryStatus.delivered else DeliveryAdvanced)


async def cancel_for_order(
    session: AsyncSession, order_id: uuid.UUID, customer_id: uuid.UUID
) -> None:
    """Part of the order-cancel transaction: cancel the ticket while the kitchen has not started.

    No delivery yet (payment or worker still on its way) → a cancelled tombstone, so the
    late ``OrderPaid`` creates nothing. When the tombstone loses to a delivery created at
    that very moment (its insert was not committed when we looked), that delivery is the
    one to cancel.
    """
    delivery = await _read(session, _LOCK_FOR_ORDER, order_id=order_id)
    if delivery is None:
        tombstone = await session.scalar(
            insert(Delivery)
            .values(
                id=delivery_id_for(order_id),  # a rider asked for meanwhile is found by it
                order_id=order_id,
                customer_id=customer_id,
                status=DeliveryStatus.cancelled,
                courier_status=CourierStatus.withdrawn,
                address="",
                items=[],
                version=1,
            )
            .on_conflict_do_nothing()  # on either index: see _NEW_TICKET
            .returning(Delivery.id)
        )
        if tombstone is not None:
            return
        delivery = await _read(session, _LOCK_FOR_ORDER, order_id=order_id)
        if delivery is None:
            return
    if delivery.status != DeliveryStatus.queued:
        raise Conflict(kitchen_started_reason(delivery.status))
    delivery.move_to(DeliveryStatus.cancelled)
    if delivery.courier_status != CourierStatus.withdrawn:
        delivery.courier_to(CourierStatus.withdrawn)
    delivery.emit(DeliveryCancelled)
    await DELIVERIES.record(session, delivery)


def kitchen_started_reason(status: str) -> str:
    stage = status
    return N_(
        "The kitchen has already started your order (%(stage)s); it can no longer be cancelled.",
        stage=status_label(stage),
    )


async def delivery_for_order(session: AsyncSession, order_id: uuid.UUID) -> Delivery | None:
    return await _read(session, _READ_FOR_ORDER, order_id=order_id)


@dataclass(frozen=True)
class DeliveryFacts:
    """What another context may know about a delivery (not the row: other contexts
    change a delivery only through this module's use cases)."""

    id: uuid.UUID
    order_id: uuid.UUID
    #: a ``DeliveryStatus`` value
    status: str
    #: when it reached the customer (its last change, for rows older than the column)
    delivered_at: datetime

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryFacts:
        delivered_at = delivery.delivered_at or delivery.updated_at
        return cls(delivery.id, delivery.order_id, delivery.status, delivered_at)


async def facts_for_order(
    session: AsyncSession, order_id: uuid.UUID, *, lock: bool = False
) -> DeliveryFacts | None:
    """The order's delivery; ``lock`` holds its row to the end of the transaction, which
    serialises everything that moves it (two refund requests at once make one refund)."""
    current = await _read(session, _LOCK_FOR_ORDER if lock else _READ_FOR_ORDER, order_id=order_id)
    return DeliveryFacts.of(current) if current is not None else None


async def facts(session: AsyncSession, delivery_id: uuid.UUID) -> DeliveryFacts | None:
    current = await get(session, delivery_id)
    return DeliveryFacts.of(current) if current is not None else None


async def get(session: AsyncSession, delivery_id: uuid.UUID) -> Delivery | None:
    return await _read(session, _READ, delivery_id=delivery_id)


async def view(session: AsyncSession, delivery_id: uuid.UUID) -> DeliveryView:
    """The staff's view of a delivery, for the adapters of other contexts (a DTO, not
    the row)."""
    current = await get(session, delivery_id)
    if current is None:
        raise NotFound(N_("delivery not found"))
    return DeliveryView.of(current)


async def list_deliveries(
    session: AsyncSession, status: DeliveryStatus | None = None
) -> list[Delivery]:
    query = select(Delivery).order_by(Delivery.paid_at.asc().nulls_last()).limit(500)
    if status is not None:
        query = query.where(Delivery.status == status)
    return list(await session.scalars(query))


# -- the courier partner -------------------------------------------------------------


async def record_pickup_requested(
    session: AsyncSession, delivery_id: uuid.UUID, partner_ref: str, cause: Event
) -> DeliveryStatus:
    """Store the partner's pickup id; the delivery's status as it is now, under its lock:
    ``cancelled`` meanwhile means the caller must withdraw the request it just made,
    ``ready`` that the kitchen finished first and the partner must hear it (the
    ``DeliveryAdvanced`` job found no pickup to tell about; the row lock orders the two)."""
    delivery = await _locked(session, delivery_id)
    _pickup_requested(delivery, partner_ref)
    await DELIVERIES.record(session, delivery, cause)
    return delivery.status


def _pickup_requested(delivery: Delivery, partner_ref: str) -> None:
    if delivery.partner_ref is None:
        delivery.partner_ref = partner_ref
    if delivery.status == DeliveryStatus.cancelled:
        return
    if delivery.courier_status == CourierStatus.unassigned:
        delivery.courier_to(CourierStatus.requested)
        delivery.emit(CourierRequested)


def partner_reference(delivery_id: uuid.UUID, trip: str = "delivery") -> str:
    """The ``reference`` we give the partner for a trip, which its webhooks must echo."""
    return str(delivery_id) if trip == "delivery" else f"{delivery_id}:return"


#: built once (news about a return trip: looked for when no delivery has the pickup)
_RETURN_PICKUP = select(ReturnPickup).where(ReturnPickup.partner_ref == bindparam("partner_ref"))


async def apply_partner_event(
    session: AsyncSession,
    partner_ref: str,
    kind: str,
    rider: str | None,
    at: datetime,
    reference: str | None = None,
    eta: datetime | None = None,
) -> bool:
    """News from the delivery partner about the pickup of a delivery; False when no
    delivery has that pickup (a return trip's, or one not recorded yet). Stale or
    repeated news changes nothing; a ``reference`` that is not this pickup's delivery is
    refused (422)."""
    delivery = await _read(session, _LOCK_FOR_PICKUP, partner_ref=partner_ref)
    if delivery is None:
        return False
    if reference is not None:
        ensure_reference(reference, partner_reference(delivery.id))
    if delivery.status == DeliveryStatus.cancelled:
        return True
    status = delivery.status
    if eta is not None and kind in (RIDER_ASSIGNED, PICKED_UP):
        delivery.partner_eta = eta  # travels with the next event this change emits
    if kind == RIDER_ASSIGNED and delivery.courier_status == CourierStatus.requested:
        delivery.rider = rider
        delivery.courier_to(CourierStatus.assigned)
        delivery.emit(CourierAssigned)
    elif kind == PICKED_UP and status is DeliveryStatus.ready:
        _move(delivery, DeliveryStatus.out_for_delivery)
    elif kind == DELIVERED and status in (DeliveryStatus.ready, DeliveryStatus.out_for_delivery):
        if status is DeliveryStatus.ready:
            _move(delivery, DeliveryStatus.out_for_delivery)
        _move(delivery, DeliveryStatus.delivered)
    await DELIVERIES.record(session, delivery)
    return True


def ensure_reference(given: str, expected: str) -> None:
    """A partner event must name the delivery its pickup was booked for: a webhook for
    pickup A cannot move delivery B."""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise InvalidInput.single("reference", N_("The reference does not belong to this pickup."))


# -- returns (refunds) -----------------------------------------------------------------


async def request_return(session: AsyncSession, delivery_id: uuid.UUID) -> None:
    """Part of the refund transaction (NFR1.2): delivered → return_requested, on a new
    return trip (each refund gets its own pickup at the partner)."""
    delivery = await _locked(session, delivery_id)
    delivery.move_to(DeliveryStatus.return_requested)
    delivery.return_trip += 1
    delivery.emit(DeliveryReturnRequested)
    await DELIVERIES.record(session, delivery)


async def cancel_return(session: AsyncSession, delivery_id: uuid.UUID) -> None:
    """Part of the refund-cancel transaction (FR11): the pizzas stay with the customer.
    Refused (409) once the rider has collected them: they are on their way back to the
    shop, and the customer would be left with neither the pizzas nor the money."""
    delivery = await _locked(session, delivery_id)
    if delivery.returning:
        pickup = await return_pickup(session, delivery_id, delivery.return_trip)
        if pickup is not None and pickup.state == ReturnPickupState.collected:
            raise Conflict(N_("The rider has already collected the pizzas; the refund goes ahead."))
    await _cancel_return(session, delivery)


async def _cancel_return(session: AsyncSession, delivery: Delivery) -> None:
    if delivery.status == DeliveryStatus.returned:
        raise Conflict(N_("the return has already reached the shop; the refund goes ahead"))
    delivery.move_to(DeliveryStatus.delivered)
    delivery.emit(DeliveryReturnCancelled)
    await DELIVERIES.record(session, delivery)


async def partner_cancelled_return(session: AsyncSession, delivery_id: uuid.UUID) -> None:
    """The partner cancelled the return trip (FR11): the pizzas stay with the customer.
    The refund follows from ``DeliveryReturnCancelled`` (its handler cancels a refund
    whose delivery is no longer returning); news about a return that is over changes
    nothing."""
    delivery = await _locked(session, delivery_id)
    if delivery.status != DeliveryStatus.return_requested:
        return
    await _cancel_return(session, delivery)


async def complete_return(session: AsyncSession, delivery_id: uuid.UUID) -> Delivery:
    """The returned pizzas reached the shop (partner webhook or staff): money goes back."""
    delivery = await _locked(session, delivery_id)
    if delivery.status == DeliveryStatus.returned:
        return delivery
    if delivery.status != DeliveryStatus.return_requested:
        raise Conflict(
            N_(
                "A %(status)s delivery has no return to complete.",
                status=status_label(delivery.status),
            )
        )
    delivery.move_to(DeliveryStatus.returned)
    delivery.emit(DeliveryReturned)
    await DELIVERIES.record(session, delivery)
    return delivery


async def confirm_return(session: AsyncSession, delivery_id: uuid.UUID) -> Delivery:
    """Staff say the returned pizzas are back (the partner's webhook says it within its
    own transaction, through ``complete_return``)."""
    delivery = await complete_return(session, delivery_id)
    await complete(session)
    return delivery


async def record_return_pickup(
    session: AsyncSession, delivery_id: uuid.UUID, trip: int, partner_ref: str
) -> bool:
    """Store the partner's pickup for return trip ``trip``; False when that trip is no
    longer wanted (its refund was cancelled meanwhile): the caller then withdraws it."""
    delivery = await _locked(session, delivery_id)
    now = utcnow()
    await session.execute(
        insert(ReturnPickup)
        .values(
            delivery_id=delivery_id,
            trip=trip,
            partner_ref=partner_ref,
            state=ReturnPickupState.active.value,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )
    return trip_wanted(delivery, trip)


def trip_wanted(delivery: Delivery, trip: int) -> bool:
    """Is return trip ``trip`` the one a refund is waiting for right now?"""
    return delivery.returning and delivery.return_trip == trip


async def return_pickup(
    session: AsyncSession, delivery_id: uuid.UUID, trip: int
) -> ReturnPickup | None:
    return await session.get(ReturnPickup, (delivery_id, trip), populate_existing=True)


async def settle_return_pickup(
    session: AsyncSession, delivery_id: uuid.UUID, trip: int, state: ReturnPickupState
) -> None:
    """Our record of the partner's trip: collected by the rider, withdrawn by us, or
    finished (``RETURN_PICKUP_MOVES``; any other move is late news and changes nothing)."""
    pickup = await _locked_return_pickup(session, delivery_id, trip)
    if pickup is not None:
        _move_return_pickup(pickup, state)


async def settle_unwanted_return(session: AsyncSession, delivery_id: uuid.UUID, trip: int) -> None:
    """A trip no refund waits for any more: withdrawn, or finished when its rider had
    collected the pizzas (they came back; the trip is over, not withdrawn)."""
    pickup = await _locked_return_pickup(session, delivery_id, trip)
    if pickup is not None:
        collected = pickup.state == ReturnPickupState.collected
        _move_return_pickup(
            pickup, ReturnPickupState.finished if collected else ReturnPickupState.withdrawn
        )


def pizzas_came_back(delivery: Delivery, trip: int) -> bool:
    """Did return trip ``trip`` bring the pizzas back to the shop (its refund paid)?"""
    return delivery.status == DeliveryStatus.returned and delivery.return_trip == trip


async def _locked_return_pickup(
    session: AsyncSession, delivery_id: uuid.UUID, trip: int
) -> ReturnPickup | None:
    # populate_existing: the state as it is once locked, not as an earlier read left it
    return await session.get(
        ReturnPickup, (delivery_id, trip), with_for_update=True, populate_existing=True
    )


def _move_return_pickup(pickup: ReturnPickup, state: ReturnPickupState) -> None:
    if state in RETURN_PICKUP_MOVES.get(ReturnPickupState(pickup.state), frozenset()):
        pickup.state = state.value
        pickup.updated_at = utcnow()


async def by_return_pickup(
    session: AsyncSession, partner_ref: str
) -> tuple[Delivery, ReturnPickup] | None:
    """The delivery (locked) and return trip a partner pickup id belongs to; the trip as
    it is once the delivery is locked (its state decides what the news may do)."""
    found = await session.scalar(_RETURN_PICKUP, {"partner_ref": partner_ref})
    if found is None:
        return None
    delivery = await _locked(session, found.delivery_id)
    pickup = await _locked_return_pickup(session, found.delivery_id, found.trip)
    return (delivery, pickup) if pickup is not None else None


async def orders_with_delivery(session: AsyncSession, order_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``order_ids`` have a delivery (the watchdog's "paid, no delivery")."""
    if not order_ids:
        return set()
    rows = await session.scalars(select(Delivery.order_id).where(Delivery.order_id.in_(order_ids)))
    return set(rows)


async def waiting_on_partner_since(
    session: AsyncSession, cutoff: datetime, limit: int = 200
) -> list[Delivery]:
    """Deliveries the partner should be moving (a rider requested or assigned, the food
    ready or on its way) that have not changed since ``cutoff``: no partner news."""
    rows = await session.scalars(
        select(Delivery)
        .where(
            Delivery.status.in_((DeliveryStatus.ready, DeliveryStatus.out_for_delivery)),
            Delivery.courier_status.in_((CourierStatus.requested, CourierStatus.assigned)),
            Delivery.updated_at < cutoff,
        )
        .order_by(Delivery.updated_at)
        .limit(limit)
    )
    return list(rows)


# -- how long the kitchen and the road take (for delivery estimates) -------------------


async def order_ids_of(
    session: AsyncSession, delivery_ids: set[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The order each delivery belongs to (the audit trail names orders, not tickets)."""
    if not delivery_ids:
        return {}
    rows = await session.execute(
        select(Delivery.id, Delivery.order_id).where(Delivery.id.in_(delivery_ids))
    )
    return {delivery_id: order_id for delivery_id, order_id in rows}
