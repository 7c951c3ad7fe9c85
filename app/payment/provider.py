"""The payment provider port and its HTTP adapter.

The shop only talks to ``PaymentProvider``; ``HttpPaymentProvider`` speaks the sandbox's
(Stripe-like) HTTP API. Errors are sorted so that callers and circuit breakers can act on
them: ``ProviderUnavailable`` is transient and counts as a breaker failure, a decline is
a normal outcome, ``PaymentRejected`` means the provider refused the request itself.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
import msgspec

from app.platform.settings import Settings

CHARGES_PATH = "/payments/v1/charges"
IDEMPOTENCY_HEADER = "Idempotency-Key"

# Client errors that say "try again later" rather than "this request is wrong".
_TRANSIENT_CLIENT_ERRORS = frozenset({408, 429})


class ChargeOutcome(msgspec.Struct, frozen=True):
    """What became of a charge attempt that the provider did answer.

    ``captured`` is False for a decline; ``failure_reason`` is then the provider's words,
    fit to show the customer.
    """

    provider_ref: str | None
    captured: bool
    failure_reason: str | None


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

    async def charge(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        card_number: str,
        idempotency_key: str,
    ) -> ChargeOutcome: ...

    async def void(self, *, provider_ref: str, idempotency_key: str) -> None: ...

    async def refund(self, *, provider_ref: str, idempotency_key: str) -> None: ...


class _ChargeResponse(msgspec.Struct, rename="camel"):
    """The part of the provider's charge body this adapter relies on."""

    id: str
    status: str
    decline_reason: str | None = None


class HttpPaymentProvider:
    """``PaymentProvider`` over HTTP; the client carries base URL and timeout."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpPaymentProvider:
        client = httpx.AsyncClient(
            base_url=settings.partners.payment_url,
            timeout=httpx.Timeout(settings.partners.timeout_seconds),
        )
        return cls(client)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpPaymentProvider:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def charge(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        card_number: str,
        idempotency_key: str,
    ) -> ChargeOutcome:
        payload = {
            "amount": amount,
            "currency": currency,
            "cardNumber": card_number,
            "reference": reference,
        }
        response = await self._post(CHARGES_PATH, idempotency_key, payload)
        if response.status_code == 201:
            body = _decode_charge(response)
            return ChargeOutcome(provider_ref=body.id, captured=True, failure_reason=None)
        if response.status_code == 402:
            body = _decode_charge(response)
            reason = body.decline_reason or "The payment was declined."
            return ChargeOutcome(provider_ref=body.id, captured=False, failure_reason=reason)
        raise _unexpected(response)

    async def void(self, *, provider_ref: str, idempotency_key: str) -> None:
        await self._transition(provider_ref, "void", idempotency_key)

    async def refund(self, *, provider_ref: str, idempotency_key: str) -> None:
        await self._transition(provider_ref, "refund", idempotency_key)

    async def _transition(self, provider_ref: str, action: str, idempotency_key: str) -> None:
        path = f"{CHARGES_PATH}/{provider_ref}/{action}"
        response = await self._post(path, idempotency_key, None)
        if response.status_code != 200:
            raise _unexpected(response)

    async def _post(self, path: str, idempotency_key: str, payload: Any) -> httpx.Response:
        """Send one request; every transport-level failure becomes ``ProviderUnavailable``."""
        try:
            return await self._client.post(
                path, json=payload, headers={IDEMPOTENCY_HEADER: idempotency_key}
            )
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(f"payment provider timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"payment provider unreachable: {exc!r}") from exc


def _decode_charge(response: httpx.Response) -> _ChargeResponse:
    """A success status with a body we cannot read is the provider misbehaving."""
    try:
        return msgspec.json.decode(response.content, type=_ChargeResponse)
    except msgspec.DecodeError as exc:
        raise ProviderUnavailable(f"unreadable payment provider response: {exc}") from exc


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return response.text[:200]


def _unexpected(response: httpx.Response) -> Exception:
    """Sort a status the caller did not expect into transient vs. refused."""
    status = response.status_code
    if 400 <= status < 500 and status not in _TRANSIENT_CLIENT_ERRORS:
        return PaymentRejected(_detail(response), status)
    return ProviderUnavailable(f"payment provider answered {status}: {_detail(response)}")
