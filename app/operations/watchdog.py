"""The watchdog: work that stopped moving, read from the source tables (not the read
models, which could be stuck themselves).

- an order whose payment has not settled after ``WATCHDOG_PAYMENT_MINUTES`` (the charge
  job is not getting through: no payment worker, a provider down for long);
- a paid order with no delivery after ``WATCHDOG_PAID_MINUTES``;
- a delivery waiting on the partner (rider requested or assigned, food ready or on its
  way) with no news for ``WATCHDOG_PARTNER_MINUTES``;
- a refund whose return has not come back after ``WATCHDOG_RETURN_MINUTES``.

This is the shop's one definition of stuck work: shown on the staff board and in
``/health``, and counted by the ``pizzeria_stuck_orders`` gauge (and its alert). Finding
is all it does: the reconciler re-enqueues lost jobs, and the delivery context may ask the
partner about the pickups it lists (``stalled(...).deliveries``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery import service as delivery
from app.ordering import service as ordering
from app.platform.db import utcnow
from app.platform.i18n import N_
from app.platform.settings import PipelineSettings
from app.refund import service as refund
from app.words import status_label

PAYMENT_NOT_SETTLED = "payment_not_settled"
PAID_WITHOUT_DELIVERY = "paid_without_delivery"
NO_PARTNER_NEWS = "no_partner_news"
REFUND_WITHOUT_RETURN = "refund_without_return"


@dataclass(frozen=True)
class Finding:
    kind: str
    order_id: uuid.UUID
    since: datetime
    subject_id: uuid.UUID  # the order, delivery or refund that is stuck
    detail: str

    @property
    def minutes(self) -> int:
        return int((utcnow() - self.since).total_seconds() // 60)


@dataclass(frozen=True)
class Stalled:
    findings: list[Finding] = field(default_factory=list)

    def of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def counts(self) -> dict[str, int]:
        kinds = (PAYMENT_NOT_SETTLED, PAID_WITHOUT_DELIVERY, NO_PARTNER_NEWS, REFUND_WITHOUT_RETURN)
        return {kind: len(self.of(kind)) for kind in kinds}


async def stalled(
    session: AsyncSession, settings: PipelineSettings, now: datetime | None = None
) -> Stalled:
    """Everything stuck right now, oldest first within each kind."""
    now = now or utcnow()
    findings: list[Finding] = []

    placed = await ordering.placed_before(
        session, now - timedelta(minutes=settings.stalled_payment_minutes)
    )
    findings += [
        Finding(PAYMENT_NOT_SETTLED, order_id, since, order_id, N_("placed, payment not settled"))
        for order_id, since in placed
    ]

    paid = await ordering.paid_before(
        session, now - timedelta(minutes=settings.stalled_paid_minutes)
    )
    with_delivery = await delivery.orders_with_delivery(session, [order_id for order_id, _ in paid])
    findings += [
        Finding(PAID_WITHOUT_DELIVERY, order_id, since, order_id, N_("paid, no delivery yet"))
        for order_id, since in paid
        if order_id not in with_delivery
    ]

    quiet = await delivery.waiting_on_partner_since(
        session, now - timedelta(minutes=settings.stalled_partner_minutes)
    )
    findings += [
        Finding(
            NO_PARTNER_NEWS,
            d.order_id,
            d.updated_at,
            d.id,
            N_(
                "%(status)s, rider %(courier)s, no news from the partner",
                status=status_label(d.status),
                courier=d.courier_status,
            ),
        )
        for d in quiet
    ]

    waiting = await refund.requested_before(
        session, now - timedelta(minutes=settings.stalled_return_minutes)
    )
    findings += [
        Finding(
            REFUND_WITHOUT_RETURN, r.order_id, r.created_at, r.id, N_("refund requested, no return")
        )
        for r in waiting
    ]
    return Stalled(findings)
