"""Payment event handlers (queue ``payment``): charge a placed order, void a cancelled one.

Provider calls happen outside any transaction (never hold a row lock across the network)
and go through the ``payment`` circuit breaker. Idempotency keys ``{payment_id}:capture``
and ``{payment_id}:void`` make a repeated call return the first result at the provider,
and the inbox / status checks make recording it happen once.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict, TypeVar

from arq import Retry
from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery.events import DeliveryReturned
from app.ordering.events import OrderCancelled, OrderPlaced
from app.payment import service
from app.payment.models import PaymentStatus
from app.payment.provider import ChargeOutcome, PaymentProvider
from app.platform import uow
from app.platform.breaker import CircuitBreaker
from app.platform.db import lookup, read_only
from app.platform.events import Event
from app.platform.handlers import (
    answer_once,
    call_partner,
    event_of,
    handle_once,
    leave_unhandled,
    retry_delay,
)
from app.platform.i18n import N_
from app.platform.worker import WorkerContext

T = TypeVar("T")


class WithCapture(TypedDict, total=False):
    """What a payment worker holding the delivery partner's clients adds to its ``ctx``
    (``workers.context.ready_with_capture``; ``total=False``: this module's annotations
    are strings, which ``NotRequired`` would not mark optional at run time)."""

    #: readies, for the order a charge has just paid, another context's reaction in the
    #: capture's own transaction (``app.subscriptions.WITH_CAPTURE``: the kitchen's
    #: ticket, its rider booked); None when it cannot now
    prepare_paid: Callable[[Event], Awaitable[uow.Prepared | None]]
    #: gives back what a try that died before recording readied, for an order that will
    #: never be paid (cancelled first)
    release_unpaid: Callable[[Event], Awaitable[bool]]


class PaymentContext(WorkerContext, WithCapture):
    """The payment worker's ``ctx`` (built by ``workers.context.payment_context``)."""

    payment_provider: PaymentProvider
    payment_breaker: CircuitBreaker


CAPTURE = "payment.capture"
VOID = "payment.void"


async def _provider(ctx: PaymentContext, call: Callable[[PaymentProvider], Awaitable[T]]) -> T:
    provider = ctx["payment_provider"]
    return await call_partner(ctx["payment_breaker"], lambda: call(provider), ctx["job_try"])


async def capture(ctx: PaymentContext, raw: dict[str, Any]) -> str:
    """Charge the card of a placed order, exactly once at the provider.

    A try may die (SIGKILL, timeout) after the provider charged the card but before we
    recorded it; the customer may cancel meanwhile. So a cancelled payment is only voided
    as uncharged after the provider said no charge was made with our idempotency key, and
    a charge that lands after such a void is voided at the provider.
    """
    event = event_of(raw)
    order_id = event.as_(OrderPlaced).order_id
    async with lookup(ctx["session_factory"]) as session:
        payment = await service.payment_for_order(session, order_id)
    if payment is None:
        return "skipped"
    payment_id, payment_method = payment.id, payment.payment_method
    key = f"{payment_id}:capture"
    if service.voided_uncharged(payment):
        # voided as uncharged: a duplicate or retried job checks no charge slipped through,
        # and no rider either
        late = await _void_late_charge(ctx, payment_id, key)
        await _release_unpaid(ctx, event)
        return late
    if payment.status != PaymentStatus.pending:
        # recorded by a try that then could not release a rider it booked: that, now
        await _release_unpaid(ctx, event)
        return "skipped"
    if payment.cancel_requested:
        return await _settle_cancelled(ctx, event, payment_id, key)
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
            idempotency_key=key,
        ),
    )
    prepare = ctx.get("prepare_paid")
    prepared = await prepare(event) if prepare is not None and outcome.captured else None

    async def record(session: AsyncSession, cause: Event) -> bool:
        if prepared is not None:
            uow.react_here(session, prepared.reactions)
        voided = await service.record_charge_outcome(session, payment_id, outcome, cause)
        if voided:  # the charge just made is voided after the commit: until then, open
            await leave_unhandled(session, CAPTURE, cause)
        elif prepared is not None:  # open too if the order was not made paid after all
            uow.before_commit(session, functools.partial(_open_unless_paid, prepared, cause))
        return voided

    # True when, under the payment's lock, a concurrent copy of this job had voided it as
    # uncharged meanwhile; None when a copy recorded first (read what it left)
    voided = await answer_once(ctx["session_factory"], CAPTURE, event, record)
    rider = ""
    # a rider booked for an order cancelled before it was paid is withdrawn; if the partner
    # is away, the job is retried, and the retry (the payment settled) releases it
    # (``_release_unpaid``). A paid order keeps it: its ticket is saved with it here, or,
    # when a copy recorded first without one, by the delivery job under the same key.
    if prepared is not None and not await prepared.undo():
        rider = ", rider booked"
    if outcome.captured:
        if voided is None:
            async with lookup(ctx["session_factory"]) as session:
                now = await service.payment_for_order(session, order_id)
            voided = now is not None and service.voided_uncharged(now)
        if voided:
            return await _void_late_charge(ctx, payment_id, key)
    return f"captured{rider}" if outcome.captured else "failed"


async def _open_unless_paid(prepared: uow.Prepared, cause: Event, session: AsyncSession) -> None:
    """The capture's last step before its commit: if the order was not made paid (it was
    cancelled meanwhile, so the rider booked with the charge did not get its ticket), the
    job stays unhandled until the rider is released after the commit. Otherwise the
    capture's inbox row goes in with it, as usual."""
    if not uow.reacted_here(session, prepared.reactions):
        await leave_unhandled(session, CAPTURE, cause)


async def _settle_cancelled(
    ctx: PaymentContext, event: Event, payment_id: uuid.UUID, key: str
) -> str:
    """The order was cancelled before we recorded a charge. An earlier try may still have
    charged the card (it died before recording): ask the provider by idempotency key.
    Charged: record the capture, and the ``OrderCancelled`` void job gives the money back.
    Not charged: void without the provider (no money moved). An earlier try, or a copy
    of this job, may also have booked the rider before dying (``prepare_paid``): released
    once the payment is settled (``_release_unpaid``)."""
    found = await _provider(ctx, lambda provider: provider.find_charge(idempotency_key=key))
    if found is not None and found.captured:

        async def record(session: AsyncSession, cause: Event) -> None:
            await service.record_charge_outcome(session, payment_id, found, cause)

        await handle_once(ctx["session_factory"], CAPTURE, event, record)
        settled = "captured before the cancel; the void follows"
    else:
        async with uow.transaction(ctx["session_factory"]) as session:
            await service.void_uncharged(session, payment_id, event)
        settled = "voided"
    await _release_unpaid(ctx, event)
    return settled


async def _release_unpaid(ctx: PaymentContext, event: Event) -> None:
    """A rider booked for an order cancelled before it was paid is released, once the
    payment is settled: a courier partner away then retries the job, whose next try finds
    the payment settled and only releases (the money never waits for the courier)."""
    release = ctx.get("release_unpaid")
    if release is not None:
        await release(event)


async def _void_late_charge(ctx: PaymentContext, payment_id: uuid.UUID, key: str) -> str:
    """The payment was voided as uncharged; if the provider did charge with our key (a try
    that raced the void), void that charge at the provider, once (the void's own key)."""
    found = await _provider(ctx, lambda provider: provider.find_charge(idempotency_key=key))
    if found is None or not found.captured or found.provider_ref is None:
        return "skipped"
    provider_ref = found.provider_ref
    await _void_at_provider(
        ctx,
        payment_id,
        provider_ref,
        lambda session: service.record_late_void(session, payment_id, provider_ref),
    )
    return "voided a late charge"


async def _void_at_provider(
    ctx: PaymentContext,
    payment_id: uuid.UUID,
    provider_ref: str,
    record: Callable[[AsyncSession], Awaitable[None]],
) -> None:
    """Void the charge at the provider, then ``record`` it in one transaction. The void's
    own idempotency key makes a repeat (a retry, the other path) return the first answer,
    so the money moves once however often we get here."""
    await _provider(
        ctx,
        lambda provider: provider.void(
            provider_ref=provider_ref, idempotency_key=f"{payment_id}:void"
        ),
    )
    async with uow.transaction(ctx["session_factory"]) as session:
        await record(session)


async def void(ctx: PaymentContext, raw: dict[str, Any]) -> str:
    """``OrderCancelled`` → give the money back: void a captured charge exactly once.

    A payment still pending is being charged right now; retry until the capture job has
    decided (it voids uncharged payments itself, or leaves a captured one for us).
    """
    event = event_of(raw)
    order_id = event.as_(OrderCancelled).order_id
    async with read_only(ctx["session_factory"]) as session:
        payment = await service.payment_for_order(session, order_id)
    if payment is None or payment.status in (PaymentStatus.failed, PaymentStatus.voided):
        return "nothing to void"
    if payment.status == PaymentStatus.pending:
        raise Retry(defer=retry_delay(ctx["job_try"]))
    if payment.status != PaymentStatus.captured or not payment.provider_ref:
        return "skipped"
    payment_id, provider_ref = payment.id, payment.provider_ref
    await _void_at_provider(
        ctx,
        payment_id,
        provider_ref,
        lambda session: service.record_void(session, payment_id, event),
    )
    return "voided"


REFUND = "payment.refund"


async def refund(ctx: PaymentContext, raw: dict[str, Any]) -> str:
    """``DeliveryReturned`` → money back at the provider, exactly once (FR8)."""
    event = event_of(raw)
    order_id = event.as_(DeliveryReturned).order_id
    async with read_only(ctx["session_factory"]) as session:
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
    async with uow.transaction(ctx["session_factory"]) as session:
        await service.record_refund(session, payment_id, event)
    return "refunded"
