"""Refund API shapes."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import msgspec

from app.refund.models import MAX_REASON_LENGTH, Refund, RefundStatus
from app.status.service import RefundEntry


class RefundRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    order_id: uuid.UUID
    reason_code: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON_LENGTH)] = ""


class ReasonView(msgspec.Struct, rename="camel"):
    code: str
    label: str
    requires_text: bool


class RefundOut(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    order_id: uuid.UUID
    status: RefundStatus
    reason_code: str
    reason: str
    amount: int
    currency: str
    created_at: datetime
    reason_label: str | None = None
    cancelled_by: str | None = None
    #: the shop's words when it cancelled the return
    cancel_note: str | None = None

    @classmethod
    def of_refund(cls, refund: Refund, reason_label: str) -> RefundOut:
        """As ``GET`` answers it: the label too (the answer to filing it had none)."""
        return cls(
            id=refund.id,
            order_id=refund.order_id,
            status=refund.status,
            reason_code=refund.reason_code,
            reason=refund.reason,
            amount=refund.amount,
            currency=refund.currency,
            created_at=refund.created_at,
            reason_label=reason_label,
            cancelled_by=refund.cancelled_by,
            cancel_note=refund.cancel_note,
        )

    @classmethod
    def of_view(cls, view: RefundEntry) -> RefundOut:
        return cls(
            id=view.refund_id,
            order_id=view.order_id,
            status=RefundStatus(view.status),
            reason_code=view.reason_code,
            reason=view.reason,
            amount=view.amount,
            currency=view.currency,
            created_at=view.created_at,
            reason_label=view.reason_label,
            cancelled_by=view.cancelled_by,
            cancel_note=view.cancel_note,
        )


def day_bound(day: date, zone: ZoneInfo, *, end: bool = False) -> datetime | None:
    """Where a lookup from (or, with ``end``, to) ``day`` stops, as a UTC instant: the
    start of that day in the shop's time zone, or of the next one, so that "to" a day
    includes it. None on the first or last day there is: no bound on that side."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    try:
        return (start + timedelta(days=1) if end else start).astimezone(UTC)
    except OverflowError:
        return None
