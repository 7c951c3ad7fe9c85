"""Refund use cases.

Filing a refund and cancelling one each change the refund AND the delivery in ONE
transaction with their events (NFR1.2, FR9, FR11); everything else follows by events:
coupon revoked or reinstated, return pickup requested or withdrawn, money back once the
return is completed.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.delivery import service as delivery
from app.delivery.events import DeliveryReturnCancelled
from app.delivery.service import DeliveryFacts, DeliveryStatus
from app.ordering import service as ordering
from app.payment.events import PaymentRefunded
from app.platform.aggregate import record_pending
from app.platform.db import utcnow
from app.platform.errors import Conflict, FieldError, InvalidInput, NotFound
from app.platform.events import Event
from app.platform.i18n import N_
from app.platform.security import Principal
from app.platform.settings import Settings
from app.platform.text import plain, storable
from app.platform.uow import complete
from app.refund.events import RefundCancelled, RefundCompleted, RefundRequested
from app.refund.models import MAX_REASON_LENGTH, Refund, RefundReason, RefundStatus
from app.words import status_label


class DeliveryGate(Protocol):
    """Refuses new refunds (503) while the delivery partner is known to be down (NFR2.4)."""

    async def ensure_open_for_refunds(self) -> None: ...


@dataclass(frozen=True)
class FileRefund:
    customer_id: uuid.UUID
    order_id: uuid.UUID
    reason_code: str
    reason: str


# -- reasons ----------------------------------------------------------------------------


async def reasons(session: AsyncSession, *, include_inactive: bool = False) -> list[RefundReason]:
    query = select(RefundReason).order_by(RefundReason.position, RefundReason.code)
    if not include_inactive:
        query = query.where(RefundReason.active)
    return list(await session.scalars(query))


#: where a reason goes in the list customers pick from (lowest first)
MAX_POSITION = 10_000


def _position(typed: int | str) -> int | None:
    """A reason's position as typed, None when it is no whole number in range (the
    column is a 32-bit integer: a longer one was a 500)."""
    try:
        place = int(str(typed).strip() or 100)
    except ValueError:
        return None
    return place if 0 <= place <= MAX_POSITION else None


async def save_reason(
    session: AsyncSession,
    admin: Principal,
    *,
    code: str,
    label: str,
    requires_text: bool,
    active: bool,
    position: int | str,
) -> RefundReason:
    """Add or edit a reason (admin). Codes are stable identifiers; labels are what people
    read (customers pick one, staff look refunds up by it: no direction controls);
    ``position`` as typed (blank: 100). The audit trail gets what changed, before and
    after, in the same transaction: it held only the label, so a reason switched off (no
    longer offered to customers) left no trace of who did it (operator walk)."""
    code, label = code.strip().lower(), label.strip()
    errors = []
    if not re.fullmatch(r"[a-z0-9_]{1,40}", code):
        errors.append(FieldError("code", N_("Use 1 to 40 letters, digits or underscores.")))
    if not label or len(label) > 100 or not plain(label):
        errors.append(FieldError("label", N_("Give the reason a label of at most 100 characters.")))
    place = _position(position)
    if place is None:
        errors.append(
            FieldError("position", N_("Use a whole number from 0 to %(n)s.", n=MAX_POSITION))
        )
    if errors or place is None:
        raise InvalidInput(errors)
    fields = {"label": label, "requires_text": requires_text, "active": active, "position": place}
    # locked: two admins saving one reason at once are recorded one after the other
    before = await session.get(RefundReason, code, with_for_update=True)
    changes = _changes(before, fields)
    audit.record(session, admin, "reason.save", f"reason:{code}", **changes)
    upsert = insert(RefundReason).values(code=code, **fields)
    saved: RefundReason | None = await session.scalar(
        upsert.on_conflict_do_update(index_elements=[RefundReason.code], set_=fields).returning(
            RefundReason
        ),
        execution_options={"populate_existing": True},
    )
    if saved is None:  # an upsert returns its row: nothing else to read back
        raise RuntimeError(f"refund reason {code!r} was not saved")
    await complete(session)
    return saved


def _changes(before: RefundReason | None, after: dict[str, object]) -> dict[str, str]:
    """What an admin's save changed, as the audit trail shows it: every field of a new
    reason, ``old → new`` for each field of an edited one (nothing: ``unchanged``)."""
    if before is None:
        return {"new": "yes"} | {name: str(value) for name, value in after.items()}
    changed = {
        name: f"{getattr(before, name)} → {value}"
        for name, value in after.items()
        if getattr(before, name) != value
    }
    return changed or {"unchanged": "yes"}


#: the labels of the reasons the first migration seeds, so pages show them translated
#: (a label an admin types is shown as typed)
SEEDED_REASON_LABELS = (
    N_("Wrong pizza"),
    N_("Missing item"),
    N_("Cold or late"),
    N_("Quality"),
    N_("Not delivered"),
    N_("Other"),
)


# -- eligibility ------------------------------------------------------------------------


def refusal(
    order_status: str, current: DeliveryFacts | None, window: timedelta, now: datetime
) -> str | None:
    """Why this order cannot be refunded now, or None when it can."""
    if order_status == "refunded":
        return N_("This order has already been refunded.")
    if order_status != "fulfilled" or current is None:
        return N_("Only delivered orders can be refunded.")
    if current.status == DeliveryStatus.return_requested:
        return N_("A refund for this order is already in progress.")
    if current.status != DeliveryStatus.delivered:
        return N_("Only delivered orders can be refunded.")
    if now - current.delivered_at > window:
        hours = int(window.total_seconds() // 3600)
        return N_(
            "Refunds are possible for %(hours)s hours after delivery; this window has closed.",
            hours=hours,
        )
    return None


async def eligibility(
    session: AsyncSession, settings: Settings, order_id: uuid.UUID, customer_id: uuid.UUID
) -> str | None:
    """For the order page: None when a refund can be filed, else the reason why not."""
    facts = await ordering.order_facts(session, order_id, customer_id)
    current = await delivery.facts_for_order(session, order_id)
    return refusal(facts.status, current, settings.shop.refund_window, utcnow())


async def _validate(session: AsyncSession, command: FileRefund) -> RefundReason:
    code = command.reason_code
    reason = await session.get(RefundReason, code) if storable(code) else None
    errors = []
    if reason is None or not reason.active:
        errors.append(FieldError("reason_code", N_("Choose one of the listed reasons.")))
    text = command.reason.strip()
    if len(text) > MAX_REASON_LENGTH:
        errors.append(
            FieldError("reason", N_("Please keep it under %(n)s characters.", n=MAX_REASON_LENGTH))
        )
    elif reason is not None and reason.requires_text and not text:
        errors.append(FieldError("reason", N_("Please tell us what went wrong.")))
    if not plain(command.reason):
        errors.append(FieldError("reason", N_("The text contains characters we cannot store.")))
    if errors:
        raise InvalidInput(errors)
    if reason is None:  # an unknown reason was named among the errors above
        raise RuntimeError("a refund reason passed validation without existing")
    return reason


# -- use cases --------------------------------------------------------------------------


async def reason_label(session: AsyncSession, refund: Refund) -> str:
    """The refund's reason in the shop's words, which its events and answers carry."""
    reason = await session.get(RefundReason, refund.reason_code)
    return reason.label if reason else refund.reason_code


async def file_refund(
    session: AsyncSession,
    settings: Settings,
    command: FileRefund,
    gate: DeliveryGate | None = None,
) -> Refund:
    """Record the refund and move the delivery to ``return_requested`` in ONE transaction.

    The delivery row lock serialises concurrent requests for one order; the partial unique
    index is the last line of defence: two requests at once make one refund.
    """
    if gate is not None:
        await gate.ensure_open_for_refunds()
    await _validate(session, command)
    facts = await ordering.order_facts(session, command.order_id, command.customer_id)
    current = await delivery.facts_for_order(session, command.order_id, lock=True)
    if reason := refusal(facts.status, current, settings.shop.refund_window, utcnow()):
        await session.rollback()
        raise Conflict(reason)
    if current is None:  # refusal() refuses an order without a delivery; never reached
        raise NotFound(N_("delivery not found"))
    refund = Refund(
        id=uuid.uuid4(),
        order_id=facts.id,
        customer_id=facts.customer_id,
        status=RefundStatus.requested,
        reason_code=command.reason_code,
        reason=command.reason.strip(),
        amount=facts.total_amount,
        currency=facts.currency,
        version=1,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    session.add(refund)
    await delivery.request_return(session, current.id)
    refund.emit(RefundRequested, reason_label=await reason_label(session, refund))
    record_pending(session, refund)
    await complete(session)
    return refund


async def _locked(session: AsyncSession, refund_id: uuid.UUID) -> Refund:
    refund = await session.get(Refund, refund_id, with_for_update=True)
    if refund is None:
        raise NotFound(N_("refund not found"))
    return refund


async def _cancel(session: AsyncSession, refund: Refund, by: str, note: str | None = None) -> None:
    """FR11: refund cancelled and delivery back to ``delivered``, together; no money moves."""
    if refund.status != RefundStatus.requested:
        raise Conflict(N_("This refund is already %(status)s.", status=status_label(refund.status)))
    current = await delivery.facts_for_order(session, refund.order_id, lock=True)
    if current is None or current.status != DeliveryStatus.return_requested:
        raise Conflict(N_("The return can no longer be cancelled."))
    await delivery.cancel_return(session, current.id)
    refund.cancelled_by = by
    refund.cancel_note = note
    refund.move_to(RefundStatus.cancelled)
    refund.emit(RefundCancelled, reason_label=await reason_label(session, refund))
    record_pending(session, refund)


async def withdraw(session: AsyncSession, refund_id: uuid.UUID, customer_id: uuid.UUID) -> Refund:
    """The customer withdraws their refund (and so the return pickup)."""
    refund = await _locked(session, refund_id)
    if refund.customer_id != customer_id:
        raise NotFound(N_("refund not found"))
    await _cancel(session, refund, "customer")
    await complete(session)
    return refund


async def cancel_return(
    session: AsyncSession, delivery_id: uuid.UUID, by: str, *, note: str | None = None
) -> Refund:
    """Staff cancel the return trip from the board or the API: the refund is cancelled
    (FR11), and the delivery back to ``delivered`` with it."""
    current = await delivery.facts(session, delivery_id)
    if current is None:
        raise NotFound(N_("delivery not found"))
    refund_id = await _requested_for(session, current.order_id)
    if refund_id is None:
        raise Conflict(N_("This delivery has no return in progress."))
    refund = await _locked(session, refund_id)
    await _cancel(session, refund, by, note)
    await complete(session)
    return refund


async def cancel_for_returned_trip(session: AsyncSession, event: Event) -> None:
    """``DeliveryReturnCancelled`` → a refund still waiting for a return that is no
    longer coming is cancelled (FR11: the partner cancelled the trip).

    Staff and customers cancel the refund in the same transaction as the delivery, so a
    refund still ``requested`` while its delivery is back at ``delivered`` can only be
    the partner's doing; a delivery returning again (a new refund) is left alone."""
    order_id = event.as_(DeliveryReturnCancelled).order_id
    current = await delivery.facts_for_order(session, order_id, lock=True)
    if current is None or current.status != DeliveryStatus.delivered:
        return
    refund_id = await _requested_for(session, order_id)
    if refund_id is None:
        return
    refund = await _locked(session, refund_id)
    refund.cancelled_by = "partner"
    refund.move_to(RefundStatus.cancelled)
    refund.emit(RefundCancelled, reason_label=await reason_label(session, refund))
    record_pending(session, refund, event)


async def _requested_for(session: AsyncSession, order_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(
        select(Refund.id).where(
            Refund.order_id == order_id, Refund.status == RefundStatus.requested
        )
    )


async def complete_for_payment(session: AsyncSession, event: Event) -> None:
    """``PaymentRefunded`` → the refund is completed."""
    refund_id = await session.scalar(
        select(Refund.id).where(
            Refund.order_id == event.as_(PaymentRefunded).order_id,
            Refund.status == RefundStatus.requested,
        )
    )
    if refund_id is None:
        return
    refund = await _locked(session, refund_id)
    refund.move_to(RefundStatus.completed)
    refund.emit(RefundCompleted, reason_label=await reason_label(session, refund))
    record_pending(session, refund, event)


async def requested_before(
    session: AsyncSession, cutoff: datetime, limit: int = 200
) -> list[Refund]:
    """Refunds still waiting for their return since before ``cutoff`` (the watchdog)."""
    rows = await session.scalars(
        select(Refund)
        .where(Refund.status == RefundStatus.requested, Refund.created_at < cutoff)
        .order_by(Refund.created_at)
        .limit(limit)
    )
    return list(rows)
