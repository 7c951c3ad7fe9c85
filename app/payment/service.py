"""Payment use cases.

``open_payment`` runs inside the ordering transaction (the order and its pending payment
commit together, NFR1.1). The provider is called only by the worker, after commit.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, cast, runtime_checkable

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.payment.events import (
    PaymentCaptured,
    PaymentChanged,
    PaymentFailed,
    PaymentRefunded,
    PaymentVoided,
)
from app.payment.models import Payment, PaymentStatus
from app.payment.provider import (
    ChargeOutcome,
    HttpPaymentProvider,
    PaymentRejected,
    ProviderUnavailable,
)
from app.payment.provider import (
    PaymentMethod as PaymentMethod,  # a card as ordering keeps it (re-exported)
)
from app.platform.aggregate import AggregateRows
from app.platform.breaker import CircuitBreaker
from app.platform.db import utcnow
from app.platform.driver import Statement
from app.platform.errors import InvalidInput, Unavailable
from app.platform.events import Event
from app.platform.i18n import N_
from app.platform.settings import Settings

log = logging.getLogger(__name__)

_NON_DIGITS = re.compile(r"[\s-]")


@runtime_checkable  # a route's ``card_vault`` dependency is checked against this type
class CardVault(Protocol):
    """Where a card number goes in exchange for a token (the payment provider)."""

    async def tokenize(self, card_number: str) -> PaymentMethod: ...


def normalize_card_number(raw: str) -> str:
    """Digits only; 422 naming ``card_number`` when it cannot be a card number."""
    digits = _NON_DIGITS.sub("", raw)
    if not (digits.isascii() and digits.isdigit()) or not 12 <= len(digits) <= 19:
        raise InvalidInput.single("card_number", N_("Enter a card number of 12 to 19 digits."))
    if not luhn_valid(digits):
        raise InvalidInput.single(
            "card_number", N_("This card number has a typo: please check the digits.")
        )
    return digits


def luhn_valid(digits: str) -> bool:
    """The checksum every real card number satisfies: a one-digit typo fails it, so the
    customer hears it at checkout instead of from the provider seconds later."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = int(char)
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


class GuardedVault:
    """A card vault whose calls go through the payment breaker. Checkout asks the
    provider before any charge: when it stops answering there, no order is placed and
    no charge fails, so only these calls can tell the breaker (and so the board, the
    alerts and every web process) that the provider is away."""

    def __init__(self, vault: CardVault, breaker: CircuitBreaker) -> None:
        self._vault = vault
        self._breaker = breaker

    async def tokenize(self, card_number: str) -> PaymentMethod:
        return await self._breaker.call(lambda: self._vault.tokenize(card_number))


@asynccontextmanager
async def card_vault(settings: Settings) -> AsyncIterator[CardVault]:
    """The payment provider from ``settings`` as a card vault, closed when the block ends:
    for a caller that was not handed the long-lived one (a script, a test)."""
    async with HttpPaymentProvider.from_settings(settings) as provider:
        yield provider


async def tokenize_card(vault: CardVault, card_number: str) -> PaymentMethod:
    """Exchange a (normalized) card number for the provider's payment-method token: from
    here on the shop only holds the token, the brand and the last four digits. 422 on
    ``card_number`` when the provider refuses the card, 503 when it does not answer."""
    try:
        return await vault.tokenize(card_number)
    except PaymentRejected as exc:
        raise InvalidInput.single("card_number", exc.detail) from exc
    except ProviderUnavailable as exc:
        log.warning("payment provider not answering at checkout: %s", exc)
        raise Unavailable(
            N_("The payment provider is not answering; please try again in a few seconds."), 5
        ) from exc


#: one per order: on the driver (``app.platform.driver``), every column given a value
_NEW_PAYMENT = Statement(insert(cast(Table, Payment.__table__)))


def open_payment(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    amount: int,
    currency: str,
    card: PaymentMethod,
) -> uuid.UUID:
    payment_id, now = uuid.uuid4(), utcnow()
    payment = {
        "id": payment_id,
        "order_id": order_id,
        "amount": amount,
        "currency": currency,
        "status": PaymentStatus.pending,
        "card_last4": card.last4,
        "card_brand": card.brand,
        "payment_method": card.id,
        "cancel_requested": False,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    _NEW_PAYMENT.add(session, [payment])  # written with the order (``Statement.add``)
    return payment_id


#: payments are read and written on the driver (``AggregateRows``): the capture changes
#: one with every order
PAYMENTS = AggregateRows(Payment)
_FOR_ORDER = Statement(PAYMENTS.select().where(Payment.order_id == bindparam("order_id")))
_LOCKED = Statement(PAYMENTS.select().where(Payment.id == bindparam("id")).with_for_update())
_LOCKED_FOR_ORDER = Statement(
    PAYMENTS.select().where(Payment.order_id == bindparam("order_id")).with_for_update()
)


async def payment_for_order(session: AsyncSession, order_id: uuid.UUID) -> Payment | None:
    row = await _FOR_ORDER.fetchrow(session, {"order_id": order_id})
    return None if row is None else PAYMENTS.loaded(row)


async def _locked(session: AsyncSession, payment_id: uuid.UUID) -> Payment | None:
    row = await _LOCKED.fetchrow(session, {"id": payment_id})
    return None if row is None else PAYMENTS.loaded(row)


async def request_cancel(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Part of the order-cancel transaction: no charge may start from now on."""
    row = await _LOCKED_FOR_ORDER.fetchrow(session, {"order_id": order_id})
    if row is not None:
        payment = PAYMENTS.loaded(row)
        payment.cancel_requested = True
        await PAYMENTS.save(session, payment)


async def void_uncharged(session: AsyncSession, payment_id: uuid.UUID, cause: Event) -> bool:
    """Cancelled before the charge: void without calling the provider (no money moved)."""
    payment = await _locked(session, payment_id)
    if payment is None or payment.status != PaymentStatus.pending:
        return False
    payment.move_to(PaymentStatus.voided)
    payment.emit(PaymentVoided)
    await PAYMENTS.record(session, payment, cause)
    return True


async def record_late_void(session: AsyncSession, payment_id: uuid.UUID, provider_ref: str) -> None:
    """A payment voided as uncharged turned out to be charged (a try raced the void) and
    that charge is now voided at the provider: keep its reference, so our record and the
    provider's agree. The status stays ``voided`` (no new event: nothing changes for the
    order or the customer)."""
    payment = await _locked(session, payment_id)
    if payment is not None and payment.status == PaymentStatus.voided and not payment.provider_ref:
        payment.provider_ref = provider_ref
        await PAYMENTS.save(session, payment)


async def record_void(session: AsyncSession, payment_id: uuid.UUID, cause: Event) -> None:
    """The provider voided the captured charge."""
    payment = await _locked(session, payment_id)
    if payment is None or payment.status != PaymentStatus.captured:
        return
    payment.move_to(PaymentStatus.voided)
    payment.emit(PaymentVoided)
    await PAYMENTS.record(session, payment, cause)


async def record_charge_outcome(
    session: AsyncSession, payment_id: uuid.UUID, outcome: ChargeOutcome, cause: Event
) -> bool:
    """Move a pending payment to captured/failed and emit the matching event. True when,
    under its lock, the payment turned out voided as uncharged meanwhile (a concurrent
    copy of the job settled a cancel): a charge just made must then be voided too.

    A payment that already left ``pending`` is left alone, so a duplicate job is harmless.
    """
    payment = await _locked(session, payment_id)
    if payment is None or payment.status != PaymentStatus.pending:
        return payment is not None and voided_uncharged(payment)
    payment.provider_ref = outcome.provider_ref
    if outcome.captured:
        payment.move_to(PaymentStatus.captured)
        event: type[PaymentChanged] = PaymentCaptured
    else:
        payment.failure_reason = outcome.failure_reason or str(N_("The payment was declined."))
        payment.move_to(PaymentStatus.failed)
        event = PaymentFailed
    payment.emit(event)
    await PAYMENTS.record(session, payment, cause)
    return False


def voided_uncharged(payment: Payment) -> bool:
    """Voided before any charge was known: a charge found later must be voided too."""
    return payment.status == PaymentStatus.voided and payment.provider_ref is None


async def record_refund(session: AsyncSession, payment_id: uuid.UUID, cause: Event) -> None:
    """The provider gave the money back."""
    payment = await _locked(session, payment_id)
    if payment is None or payment.status != PaymentStatus.captured:
        return
    payment.move_to(PaymentStatus.refunded)
    payment.emit(PaymentRefunded)
    await PAYMENTS.record(session, payment, cause)
