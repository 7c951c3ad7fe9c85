"""The delivery partner port and its HTTP adapter.

The delivery context only talks to ``CourierGateway``; ``HttpCourierGateway`` speaks the
sandbox courier's HTTP API (a typical delivery agency: request a pickup, say the food is
ready, cancel; the partner reports progress by signed webhooks). Errors are sorted so that
callers and circuit breakers can act on them: ``CourierUnavailable`` is transient and
counts as a breaker failure, ``CourierRejected`` means the partner refused the request
itself (e.g. a cancel after the rider picked the food up).

Webhooks arrive as JSON (see ``CourierEvent``) with an ``X-Courier-Signature`` header
that ``app.platform.signing.verify`` checks against
``settings.partners.courier_webhook_secret``. The partner re-sends an event with the same
``eventId`` when our endpoint fails, so the receiver must dedupe on it.
"""

from __future__ import annotations

from typing import Literal, Protocol
from urllib.parse import quote

import msgspec

from app.platform.partner_http import PartnerClient, PartnerTransport, partner_client
from app.platform.settings import Settings

PICKUPS_PATH = "/courier/v1/pickups"
SIGNATURE_HEADER = "X-Courier-Signature"

# Client errors that say "try again later" rather than "this request is wrong".

CourierEventType = Literal["rider_assigned", "picked_up", "delivered", "cancelled"]

#: A pickup in one of these states still has (or waits for) a rider at the partner.
OPEN_PICKUP_STATUSES = frozenset({"requested", "assigned"})


class PickupOutcome(msgspec.Struct, frozen=True):
    """The partner's pickup as it answered our request.

    ``partner_ref`` is the partner's pickup id (``pk_...``), needed for every later call;
    ``rider`` is the rider's display name once one is assigned.
    """

    partner_ref: str
    status: str
    rider: str | None


class CourierUnavailable(Exception):
    """Timeout, connection error, 5xx, 408/429: counts as a failure for a circuit breaker.

    The outcome of the call is unknown; retrying with the same idempotency key is safe.
    """


class CourierRejected(Exception):
    """The partner refused the request itself (e.g. 409 on a cancel after pickup).

    Not transient: retrying the same request gives the same answer.
    """

    def __init__(self, detail: str, status_code: int) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.detail = detail
        self.status_code = status_code


class CourierGateway(Protocol):
    """The port the delivery service depends on; a real agency is a new adapter."""

    async def request_pickup(
        self,
        *,
        reference: str,
        address: str,
        callback_url: str,
        idempotency_key: str,
        ready: bool = False,
    ) -> PickupOutcome:
        """Book a rider to ``address``. ``ready``: the goods wait there already (a return
        trip collects the pizzas at the customer's), so no ``mark_ready`` will follow."""
        ...

    async def mark_ready(self, *, partner_ref: str, idempotency_key: str) -> None: ...

    async def cancel_pickup(self, *, partner_ref: str, idempotency_key: str) -> None: ...

    async def pickup_status(self, *, partner_ref: str) -> PickupOutcome:
        """Where the pickup is now (requested, assigned, picked_up, delivered,
        cancelled): how we catch up when its webhooks were lost."""
        ...

    async def find_pickup(self, *, idempotency_key: str) -> PickupOutcome | None:
        """The pickup a request with ``idempotency_key`` booked, as it is now; None when
        the partner never booked one with that key."""
        ...


class CourierRider(msgspec.Struct, frozen=True):
    name: str


class CourierEvent(msgspec.Struct, rename="camel", frozen=True):
    """A webhook body as the partner sends it (decode only after verifying the signature)."""

    event_id: str
    type: CourierEventType
    pickup_id: str
    reference: str
    rider: CourierRider | None
    occurred_at: str
    #: the partner's own estimate of when the rider reaches the customer
    estimated_delivery_at: str | None = None


class _PickupResponse(msgspec.Struct, rename="camel"):
    """The part of the partner's pickup body this adapter relies on."""

    id: str
    status: str
    rider: CourierRider | None = None


class HttpCourierGateway:
    """``CourierGateway`` over HTTP; the transport carries base URL and timeout."""

    def __init__(self, transport: PartnerTransport) -> None:
        self._transport = transport
        self._http = PartnerClient(
            transport, "courier partner", CourierUnavailable, CourierRejected, partner="courier"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpCourierGateway:
        return cls(partner_client(settings.partners.courier_url, settings.partners.timeout_seconds))

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> HttpCourierGateway:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def request_pickup(
        self,
        *,
        reference: str,
        address: str,
        callback_url: str,
        idempotency_key: str,
        ready: bool = False,
    ) -> PickupOutcome:
        payload: dict[str, object] = {
            "reference": reference,
            "address": address,
            "callbackUrl": callback_url,
        }
        if ready:  # only then: a delivery's booking is the same request it always was
            payload["ready"] = True
        response = await self._http.post(
            PICKUPS_PATH, idempotency_key, payload, operation="request_pickup"
        )
        if response.status_code not in (200, 201):
            raise self._http.unexpected(response)
        body = self._http.decode(response, _PickupResponse)
        rider = body.rider.name if body.rider else None
        return PickupOutcome(partner_ref=body.id, status=body.status, rider=rider)

    async def mark_ready(self, *, partner_ref: str, idempotency_key: str) -> None:
        await self._action(partner_ref, "ready", idempotency_key)

    async def pickup_status(self, *, partner_ref: str) -> PickupOutcome:
        response = await self._http.get(f"{PICKUPS_PATH}/{partner_ref}")
        if response.status_code != 200:
            raise self._http.unexpected(response)
        body = self._http.decode(response, _PickupResponse)
        rider = body.rider.name if body.rider else None
        return PickupOutcome(partner_ref=body.id, status=body.status, rider=rider)

    async def find_pickup(self, *, idempotency_key: str) -> PickupOutcome | None:
        """A job whose pickup request may have reached the partner before the job died
        (booked there, never recorded here) asks this before treating the pickup as never
        made: a withdrawn refund or a cancelled order must not leave a rider booked."""
        path = f"{PICKUPS_PATH}/by-idempotency-key/{quote(idempotency_key, safe='')}"
        response = await self._http.get(path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._http.unexpected(response)
        body = self._http.decode(response, _PickupResponse)
        rider = body.rider.name if body.rider else None
        return PickupOutcome(partner_ref=body.id, status=body.status, rider=rider)

    async def cancel_pickup(self, *, partner_ref: str, idempotency_key: str) -> None:
        await self._action(partner_ref, "cancel", idempotency_key)

    async def _action(self, partner_ref: str, action: str, idempotency_key: str) -> None:
        path = f"{PICKUPS_PATH}/{partner_ref}/{action}"
        response = await self._http.post(path, idempotency_key, None, operation=action)
        if response.status_code != 200:
            raise self._http.unexpected(response)
