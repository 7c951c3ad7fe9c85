"""Payment event handlers (queue ``payment``)."""

from __future__ import annotations

import uuid
from typing import Any

from arq import Retry

from app.payment import service
from app.payment.models import PaymentStatus
from app.payment.provider import PaymentProvider, ProviderUnavailable
from app.platform.handlers import event_of, handle_once, retry_delay

CAPTURE = "payment.capture"


async def capture(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
    """Charge the card of a placed order, exactly once at the provider.

    The provider call happens outside any transaction (never hold a row lock across the
    network); the idempotency key ``{payment_id}:capture`` makes a repeated call return
    the first result, and the inbox makes recording it happen once.
    """
    event = event_of(raw)
    order_id = uuid.UUID(event.payload["orderId"])
    async with ctx["session_factory"]() as session:
        payment = await service.payment_for_order(session, order_id)
    if payment is None or payment.status != PaymentStatus.pending or not payment.card_number:
        return "skipped"
    provider: PaymentProvider = ctx["payment_provider"]
    try:
        outcome = await provider.charge(
            reference=str(payment.id),
            amount=payment.amount,
            currency=payment.currency,
            card_number=payment.card_number,
            idempotency_key=f"{payment.id}:capture",
        )
    except ProviderUnavailable as exc:
        raise Retry(defer=retry_delay(ctx["job_try"])) from exc

    async def record(session: Any, cause: Any) -> None:
        await service.record_charge_outcome(session, payment.id, outcome, cause)

    await handle_once(ctx["session_factory"], CAPTURE, event, record)
    return "captured" if outcome.captured else "failed"
