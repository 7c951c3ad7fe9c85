"""The payment provider port and its HTTP adapter.

The shop only talks to ``PaymentProvider``; ``HttpPaymentProvider`` speaks the sandbox's
(Stripe-like) HTTP API. Errors are sorted so that callers and circuit breakers can act on
them: ``ProviderUnavailable`` is transient and counts as a breaker failure, a decline is
a normal outcome, ``PaymentRejected`` means the provider refused the request itself.
"""

from __future__ import annotations

import uuid
from typing import Protocol
from urllib.parse import quote

import msgspec

from app.platform.i18n import N_
from app.platform.partner_http import PartnerClient, PartnerTransport, partner_client
from app.platform.settings import Settings

CHARGES_PATH = "/payments/v1/charges"
PAYMENT_METHODS_PATH = "/payments/v1/payment-methods"

# Client errors that say "try again later" rather than "this request is wrong".


class ChargeOutcome(msgspec.Struct, frozen=True):
    """What became of a charge attempt that the provider did answer.

    ``captured`` is False for a decline; ``failure_reason`` is then the provider's words,
    fit to show the customer.
    """

    provider_ref: str | None
    captured: bool
    failure_reason: str | None


#: the provider's decline reasons we know, so a customer reads them in their language
KNOWN_DECLINE_REASONS = (
    N_("Your card was declined."),
    N_("Insufficient funds."),
    N_("Your card number is incorrect."),
    N_("The payment was declined."),
)


class PaymentMethod(msgspec.Struct, frozen=True):
    """A card as the shop keeps it: the provider's token, the brand and the last four
    digits. The number itself stays with the provider."""

    id: str
    brand: str
    last4: str


class ProviderUnavailable(Exception):
    """Timeout, connection error, 5xx: counts as a failure for a circuit breaker.

    The outcome of the call is unknown; retrying with the same idempotency key is safe.
    """


class PaymentRejected(Exception):
    """The provider refused the request itself (e.g. 409 on a void of a voided charge).

    Not transient: retrying the same request gives the same answer.
    """

    def __init__(self, detail: str, status_code: int) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.detail = detail
        self.status_code = status_code


class PaymentProvider(Protocol):
    """The port the payment service depends on; a real provider is a new adapter."""

    async def tokenize(self, card_number: str) -> PaymentMethod: ...

    async def charge(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
    ) -> ChargeOutcome: ...

    async def find_charge(self, *, idempotency_key: str) -> ChargeOutcome | None: ...

    async def void(self, *, provider_ref: str, idempotency_key: str) -> None: ...

    async def refund(self, *, provider_ref: str, idempotency_key: str) -> None: ...


class _ChargeResponse(msgspec.Struct, rename="camel"):
    """The part of the provider's charge body this adapter relies on."""

    id: str
    status: str
    decline_reason: str | None = None


class HttpPaymentProvider:
    """``PaymentProvider`` over HTTP; the transport carries base URL and timeout."""

    def __init__(self, transport: PartnerTransport) -> None:
        self._transport = transport
        self._http = PartnerClient(
            transport, "payment provider", ProviderUnavailable, PaymentRejected, partner="payment"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpPaymentProvider:
        return cls(partner_client(settings.partners.payment_url, settings.partners.timeout_seconds))

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> HttpPaymentProvider:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def tokenize(self, card_number: str) -> PaymentMethod:
        """Exchange a card number for a payment-method token (the checkout's only use of
        the number); ``PaymentRejected`` when the provider refuses the card."""
        payload = {"cardNumber": card_number}
        response = await self._http.post(
            PAYMENT_METHODS_PATH, uuid.uuid4().hex, payload, operation="tokenize"
        )
        if response.status_code == 201:
            return self._http.decode(response, PaymentMethod)
        raise self._http.unexpected(response)

    async def charge(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
    ) -> ChargeOutcome:
        payload = {
            "amount": amount,
            "currency": currency,
            "paymentMethod": payment_method,
            "reference": reference,
        }
        response = await self._http.post(CHARGES_PATH, idempotency_key, payload, operation="charge")
        if response.status_code == 201:
            body = self._http.decode(response, _ChargeResponse)
            return ChargeOutcome(provider_ref=body.id, captured=True, failure_reason=None)
        if response.status_code == 402:
            body = self._http.decode(response, _ChargeResponse)
            reason = body.decline_reason or str(N_("The payment was declined."))
            return ChargeOutcome(provider_ref=body.id, captured=False, failure_reason=reason)
        raise self._http.unexpected(response)

    async def find_charge(self, *, idempotency_key: str) -> ChargeOutcome | None:
        """What a charge made with ``idempotency_key`` became, without making one: None
        when the provider never charged with that key. A job whose charge call may have
        reached the provider before the job died asks this before treating the payment
        as uncharged (a cancel after a lost answer must not leave the card charged)."""
        path = f"{CHARGES_PATH}/by-idempotency-key/{quote(idempotency_key, safe='')}"
        response = await self._http.get(path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._http.unexpected(response)
        body = self._http.decode(response, _ChargeResponse)
        if body.status == "declined":
            reason = body.decline_reason or str(N_("The payment was declined."))
            return ChargeOutcome(provider_ref=body.id, captured=False, failure_reason=reason)
        # captured, or already voided / refunded: the card was charged with this key
        return ChargeOutcome(provider_ref=body.id, captured=True, failure_reason=None)

    async def void(self, *, provider_ref: str, idempotency_key: str) -> None:
        await self._transition(provider_ref, "void", idempotency_key)

    async def refund(self, *, provider_ref: str, idempotency_key: str) -> None:
        await self._transition(provider_ref, "refund", idempotency_key)

    async def _transition(self, provider_ref: str, action: str, idempotency_key: str) -> None:
        path = f"{CHARGES_PATH}/{provider_ref}/{action}"
        response = await self._http.post(path, idempotency_key, None, operation=action)
        if response.status_code != 200:
            raise self._http.unexpected(response)
