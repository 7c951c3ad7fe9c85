"""Payment event handlers (queue ``payment``): charge a placed order, void a cancelled one.

Provider calls happen outside any transaction (never hold a row lock across the network)
and go through the ``payment`` circuit breaker. Idempotency keys ``{payment_id}:capture``
and ``{payment_id}:void`` make a repeated call return the first result at the provider,
and the inbox / status checks make recording it happen once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq import Retry
from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery.events import DeliveryReturned
from app.ordering.events import OrderCancelled, OrderPlaced
from app.payment import service
from app.payment.models import PaymentStatus
from app.payment.provider import ChargeOutcome, PaymentProvider
from app.platform.events import Event
from app.platform.handlers import call_partner, event_of, handle_once, retry_delay
from app.platform.i18n import N_

T = TypeVar("T")

CAPTURE = "payment.capture"
VOID = "payment.void"


async def _provider(ctx: dict[str, Any], call: Callable[[PaymentProvider], Awaitable[T]]) -> T:
    provider: PaymentProvider = ctx["payment_provider"]
    return await call_partner(ctx["payment_breaker"], lambda: call(provider), ctx["job_try"])


async def capture(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
    """Charge the card of a placed order, exactly once at the provider."""
    event = event_of(raw)
    order_id = event.as_(OrderPlaced).order_id
    async with ctx["session_factory"]() as session:
        payment = await service.payment_for_order(session, order_id)
    if payment is None or payment.status != PaymentStatus.pending:
        return "skipped"
    payment_id, payment_method = payment.id, payment.payment_method
    if payment.cancel_requested:
        async with ctx["session_factory"]() as session, session.begin():
            await service.void_uncharged(session, payment_id, event)
        return "voided"
    if payment_method is None:  # placed before card numbers were dropped (migration)
        outcome = ChargeOutcome(
            None, False, str(N_("The card details expired; please order again."))
        )
        await handle_once(
            ctx["session_factory"],
            CAPTURE,
            event,
            lambda session, cause: service.record_charge_outcome(
                session, payment_id, outcome, cause
            ),
        )
        return "failed"
    outcome = await _provider(
        ctx,
        lambda provider: provider.charge(
            reference=str(payment_id),
            amount=payment.amount,
            currency=payment.currency,
            payment_method=payment_method,
            idempotency_key=f"{payment_id}:capture",
        ),
    )

    async def record(session: AsyncSession, cause: Event) -> None:
        await service.record_charge_outcome(session, payment_id, outcome, cause)

    await handle_once(ctx["session_factory"], CAPTURE, event, record)
    return "captured" if outcome.captured else "failed"


async def void(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
    """``OrderCancelled`` → give the money back: void a captured charge exactly once.

    A payment still pending is being charged right now; retry until the capture job has
    decided (it voids uncharged payments itself, or leaves a captured one for us).
    """
    event = event_of(raw)
    order_id = event.as_(OrderCancelled).order_id
    async with ctx["session_factory"]() as session:
        payment = await service.payment_for_order(session, order_id)
    if payment is None or payment.status in (PaymentStatus.failed, PaymentStatus.voided):
        return "nothing to void"
    if payment.status == PaymentStatus.pending:
        raise Retry(defer=retry_delay(ctx["job_try"]))
    if payment.status != PaymentStatus.captured or not payment.provider_ref:
        return "skipped"
    payment_id, provider_ref = payment.id, payment.provider_ref
    await _provider(
        ctx,
        lambda provider: provider.void(
            provider_ref=provider_ref, idempotency_key=f"{payment_id}:void"
        ),
    )
    async with ctx["session_factory"]() as session, session.begin():
        await service.record_void(session, payment_id, event)
    return "voided"


REFUND = "payment.refund"


async def refund(ctx: dict[str, Any], raw: dict[str, Any]) -> str:
    """``DeliveryReturned`` → money back at the provider, exactly once (FR8)."""
    event = event_of(raw)
    order_id = event.as_(DeliveryReturned).order_id
    async with ctx["session_factory"]() as session:
        payment = await service.payment_for_order(session, order_id)
    if payment is None or payment.status != PaymentStatus.captured or not payment.provider_ref:
        return "nothing to refund"
    payment_id, provider_ref = payment.id, payment.provider_ref
    await _provider(
        ctx,
        lambda provider: provider.refund(
            provider_ref=provider_ref, idempotency_key=f"{payment_id}:refund"
        ),
    )
    async with ctx["session_factory"]() as session, session.begin():
        await service.record_refund(session, payment_id, event)
    return "refunded"
