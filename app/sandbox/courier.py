"""Sandbox delivery partner: a fake courier agency with its own riders.

It behaves like a real delivery agency's API: the shop requests a pickup (idempotency
key, callback URL), says when the food is ready, may cancel until the rider has the food.
Progress comes back as signed webhooks (``X-Courier-Signature``, Stripe style, see
``app.platform.signing``) that are retried with backoff, re-sending the same ``eventId``,
while the shop's endpoint answers 5xx or is unreachable.

The autopilot plays the riders: a rider is assigned one step after the request, picks the
food up one step after the shop's ``ready`` call and delivers it one step later. Goods
that wait at the address already (a return: the pizzas are at the customer's) are booked
``ready``, and their rider collects them ``collect_seconds`` after being assigned, without
waiting for a call. Tests turn it off, or make collecting slower than any test, and drive
pickups by hand through ``/sandbox/courier/pickups/{id}/events``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from app.platform import signing
from app.platform.settings import PartnerSettings
from app.sandbox.common import (
    MISSING_KEY,
    IdempotencyStore,
    Outcome,
    detail,
    idempotency_key,
    knob_gate,
    late_answer,
    respond,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Courier-Signature"
DEFAULT_WEBHOOK_SECRET = "dev-only-courier-webhook-secret"

EventType = Literal["rider_assigned", "picked_up", "delivered", "cancelled"]
PickupStatus = Literal["requested", "assigned", "picked_up", "delivered", "cancelled"]
CourierOperation = Literal["request", "ready", "cancel"]

_STATUS_AFTER: dict[EventType, PickupStatus] = {
    "rider_assigned": "assigned",
    "picked_up": "picked_up",
    "delivered": "delivered",
    "cancelled": "cancelled",
}
_CANCELLABLE: frozenset[PickupStatus] = frozenset({"requested", "assigned"})

_FIRST_NAMES = (
    "Alessandro",
    "Andrea",
    "Chiara",
    "Davide",
    "Elena",
    "Francesca",
    "Giorgia",
    "Giulia",
    "Lorenzo",
    "Luca",
    "Marco",
    "Martina",
    "Matteo",
    "Simone",
    "Sofia",
    "Valentina",
)
_INITIALS = "BCDFGLMNPRSTV"


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "1" if default else "0")
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_seconds(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else None


@dataclass(frozen=True)
class CourierConfig:
    """How the sandbox courier behaves; ``from_env`` is what a sandbox process uses."""

    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    autopilot: bool = True
    step_seconds: float = 2.0
    #: the rider's estimate, from assignment to the customer's door
    eta_minutes: float = 12.0
    #: from assignment to collecting goods booked ``ready`` (a return); None: one step
    collect_seconds: float | None = None
    retry_seconds: float = 0.5  # first webhook retry delay; doubles on every retry
    max_attempts: int = 5  # webhook deliveries per event, the first one included
    webhook_timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> CourierConfig:
        """``COURIER_WEBHOOK_SECRET`` (via settings) and the ``SANDBOX_COURIER_*`` knobs."""
        return cls(
            webhook_secret=PartnerSettings().courier_webhook_secret,
            autopilot=_env_flag("SANDBOX_COURIER_AUTOPILOT", True),
            step_seconds=float(os.environ.get("SANDBOX_COURIER_STEP_SECONDS", "2.0")),
            eta_minutes=float(os.environ.get("SANDBOX_COURIER_ETA_MINUTES", "12")),
            retry_seconds=float(os.environ.get("SANDBOX_COURIER_RETRY_SECONDS", "0.5")),
            collect_seconds=_env_seconds("SANDBOX_COURIER_COLLECT_SECONDS"),
        )


# --------------------------------------------------------------------------- wire formats


class PickupRequest(msgspec.Struct, rename="camel", frozen=True):
    """Body of ``POST /courier/v1/pickups``; validation failures are a 400."""

    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    address: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    callback_url: Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$", max_length=2000)]
    #: the goods wait at the address already (a return): no ``ready`` call will follow
    ready: bool = False


class Rider(msgspec.Struct, frozen=True):
    name: str


class PickupBody(msgspec.Struct, rename="camel"):
    """A pickup as the partner API returns it."""

    id: str
    reference: str
    status: str
    rider: Rider | None


class WebhookEvent(msgspec.Struct, rename="camel", frozen=True):
    """The JSON body of one webhook; the same body is re-sent on every retry."""

    event_id: str
    type: EventType
    pickup_id: str
    reference: str
    rider: Rider | None
    occurred_at: str
    #: the partner's estimate of the delivery time, once a rider has the pickup
    estimated_delivery_at: str | None = None


class EventDelivery(msgspec.Struct, rename="camel"):
    """How the delivery of one event went (updated while retries are under way)."""

    event_id: str
    type: EventType
    delivered: bool = False
    status: int | None = None
    attempts: int = 0


class PickupView(msgspec.Struct, rename="camel"):
    """A pickup as the test-inspection API shows it, with our calls and its webhooks."""

    id: str
    reference: str
    status: str
    rider: Rider | None
    address: str
    callback_url: str
    operations: list[str]
    events: list[EventDelivery]
    #: booked with the goods ready for collection (a return)
    booked_ready: bool = False


class ManualEvent(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /sandbox/courier/pickups/{id}/events``.

    ``webhook: false`` moves the pickup without telling the shop: a webhook the partner
    gave up on (the shop then only learns it by asking, see ``GET /courier/v1/pickups/{id}``).
    """

    type: EventType
    webhook: bool = True


class ManualEventResult(msgspec.Struct, rename="camel"):
    delivered: bool
    status: int | None
    event_id: str


# --------------------------------------------------------------------------- state


class PickupRecord:
    """The partner's own record of one pickup."""

    def __init__(self, pickup_id: str, request: PickupRequest) -> None:
        self.id = pickup_id
        self.reference = request.reference
        self.address = request.address
        self.callback_url = request.callback_url
        self.status: PickupStatus = "requested"
        self.rider: str | None = None
        #: booked ready: the rider collects on their own (``CourierConfig.collect_seconds``)
        self.booked_ready = request.ready
        self.ready = request.ready
        self.operations: list[CourierOperation] = ["request"]
        self.events: list[EventDelivery] = []
        # Set whenever something the autopilot waits for happens (ready, manual events).
        self.changed = asyncio.Event()

    def rider_body(self) -> Rider | None:
        return Rider(self.rider) if self.rider else None

    def body(self) -> PickupBody:
        return PickupBody(
            id=self.id, reference=self.reference, status=self.status, rider=self.rider_body()
        )

    def view(self) -> PickupView:
        return PickupView(
            id=self.id,
            reference=self.reference,
            status=self.status,
            rider=self.rider_body(),
            address=self.address,
            callback_url=self.callback_url,
            operations=list(self.operations),
            events=list(self.events),
            booked_ready=self.booked_ready,
        )


class CourierSandbox:
    """All in-memory state of the sandbox courier, including its autopilot tasks."""

    def __init__(self, config: CourierConfig) -> None:
        self.config = config
        self.pickups: dict[str, PickupRecord] = {}
        self.keys = IdempotencyStore()
        #: the pickup each ``POST /pickups`` idempotency key made (look-up by key)
        self.pickup_keys: dict[str, str] = {}
        self._random = random.Random()
        self._autopilots: dict[str, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None

    async def reset(self) -> None:
        """Stop every rider and forget every pickup and key."""
        await self.aclose()
        self.pickups.clear()
        self.keys.clear()
        self.pickup_keys.clear()

    async def aclose(self) -> None:
        """Stop the autopilot tasks and close the webhook client (app shutdown)."""
        tasks = list(self._autopilots.values())
        self._autopilots.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # ----------------------------------------------------------------- partner API

    def request_pickup(self, request: PickupRequest, key: str) -> Outcome:
        record = PickupRecord(f"pk_{secrets.token_hex(12)}", request)
        self.pickups[record.id] = record
        self.pickup_keys[key] = record.id
        if self.config.autopilot:
            self._start_autopilot(record)
        return Outcome(201, msgspec.json.encode(record.body()))

    def mark_ready(self, pickup_id: str) -> Outcome:
        """The kitchen says the food can be collected; saying it twice changes nothing."""
        record = self.pickups.get(pickup_id)
        if record is None:
            return _no_such_pickup(pickup_id)
        if record.status == "cancelled":
            return detail(409, "cannot mark a cancelled pickup ready")
        if not record.ready and record.status in _CANCELLABLE:
            record.ready = True
            record.operations.append("ready")
            record.changed.set()
        return Outcome(200, msgspec.json.encode(record.body()))

    def cancel(self, pickup_id: str) -> Outcome:
        """Withdraw the rider request; impossible once the rider has the food."""
        record = self.pickups.get(pickup_id)
        if record is None:
            return _no_such_pickup(pickup_id)
        if record.status not in _CANCELLABLE | {"cancelled"}:
            return detail(
                409, f"cannot cancel a pickup that is {record.status}; the rider has the food"
            )
        if record.status != "cancelled":
            record.status = "cancelled"
            record.operations.append("cancel")
            self._stop_autopilot(record.id)
        return Outcome(200, msgspec.json.encode(record.body()))

    # ----------------------------------------------------------------- webhooks

    def _advance(self, record: PickupRecord, event_type: EventType) -> WebhookEvent:
        """Apply an event to the pickup and build its webhook (no validation: tests may
        simulate a partner that sends events out of order)."""
        if event_type == "rider_assigned" and record.rider is None:
            record.rider = f"{self._random.choice(_FIRST_NAMES)} {self._random.choice(_INITIALS)}."
        record.status = _STATUS_AFTER[event_type]
        record.changed.set()
        now = datetime.now(UTC)
        eta = None
        if event_type in ("rider_assigned", "picked_up"):
            eta = (now + timedelta(minutes=self.config.eta_minutes)).isoformat()
        return WebhookEvent(
            event_id=f"ev_{secrets.token_hex(12)}",
            type=event_type,
            pickup_id=record.id,
            reference=record.reference,
            rider=record.rider_body(),
            occurred_at=now.isoformat(),
            estimated_delivery_at=eta,
        )

    async def _deliver(self, record: PickupRecord, event: WebhookEvent) -> EventDelivery:
        """POST the event to the callback URL, retrying with backoff on 5xx or no answer."""
        delivery = EventDelivery(event_id=event.event_id, type=event.type)
        record.events.append(delivery)
        body = msgspec.json.encode(event)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.config.webhook_timeout_seconds)
        client = self._client
        for attempt in range(self.config.max_attempts):
            if attempt:
                await asyncio.sleep(self.config.retry_seconds * 2 ** (attempt - 1))
            delivery.attempts += 1
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signing.sign(self.config.webhook_secret, body),
            }
            try:
                response = await client.post(record.callback_url, content=body, headers=headers)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                logger.info(
                    "courier webhook %s to %s failed: %r", event.event_id, record.callback_url, exc
                )
                delivery.status = None
                continue
            delivery.status = response.status_code
            if response.status_code < 500:
                break
        delivery.delivered = delivery.status is not None and 200 <= delivery.status < 300
        return delivery

    async def send_now(
        self, pickup_id: str, event_type: EventType, *, webhook: bool = True
    ) -> ManualEventResult | None:
        """Manual control: apply ``event_type`` and deliver its webhook before returning
        (or, with ``webhook=False``, lose it)."""
        record = self.pickups.get(pickup_id)
        if record is None:
            return None
        if event_type in ("delivered", "cancelled"):
            self._stop_autopilot(record.id)
        event = self._advance(record, event_type)
        if not webhook:
            lost = EventDelivery(event_id=event.event_id, type=event.type)
            record.events.append(lost)
            return ManualEventResult(delivered=False, status=None, event_id=event.event_id)
        delivery = await self._deliver(record, event)
        return ManualEventResult(
            delivered=delivery.delivered, status=delivery.status, event_id=delivery.event_id
        )

    # ----------------------------------------------------------------- autopilot

    def _start_autopilot(self, record: PickupRecord) -> None:
        task = asyncio.create_task(self._autopilot(record), name=f"courier-autopilot-{record.id}")
        self._autopilots[record.id] = task

        def finished(done: asyncio.Task[None]) -> None:
            if self._autopilots.get(record.id) is done:
                del self._autopilots[record.id]
            if not done.cancelled() and (exc := done.exception()) is not None:
                logger.error("courier autopilot for %s crashed", record.id, exc_info=exc)

        task.add_done_callback(finished)

    def _pause_before(self, record: PickupRecord, next_event: EventType) -> float:
        """A step, or the rider's way to goods booked ready (to the customer's door)."""
        collect = self.config.collect_seconds
        if next_event == "picked_up" and record.booked_ready and collect is not None:
            return collect
        return self.config.step_seconds

    def _stop_autopilot(self, pickup_id: str) -> None:
        task = self._autopilots.pop(pickup_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _autopilot(self, record: PickupRecord) -> None:
        """Play the partner's rider; follows the pickup wherever manual events move it."""
        while True:
            status = record.status
            if status == "assigned" and not record.ready:
                record.changed.clear()
                await record.changed.wait()
                continue
            next_event: EventType
            if status == "requested":
                next_event = "rider_assigned"
            elif status == "assigned":
                next_event = "picked_up"
            elif status == "picked_up":
                next_event = "delivered"
            else:
                return
            await asyncio.sleep(self._pause_before(record, next_event))
            if record.status == status:
                await self._deliver(record, self._advance(record, next_event))

    def __repr__(self) -> str:
        return f"CourierSandbox(pickups={len(self.pickups)}, autopilots={len(self._autopilots)})"


def _no_such_pickup(pickup_id: str) -> Outcome:
    return detail(404, f"no such pickup: {pickup_id}")


# --------------------------------------------------------------------------- HTTP layer


def courier_of(state: State) -> CourierSandbox:
    courier = state["courier"]
    assert isinstance(courier, CourierSandbox)
    return courier


@post("/pickups")
async def request_pickup(
    request: Request[Any, Any, Any], courier: NamedDependency[CourierSandbox]
) -> Response[bytes]:
    key = idempotency_key(request)
    if key is None:
        return respond(MISSING_KEY)
    try:
        body = msgspec.json.decode(await request.body(), type=PickupRequest)
    except msgspec.DecodeError as exc:
        return respond(detail(400, f"invalid pickup request: {exc}"))
    fingerprint = b"pickup:" + msgspec.json.encode(body)
    return respond(courier.keys.run(key, fingerprint, lambda: courier.request_pickup(body, key)))


@post("/pickups/{pickup_id:str}/ready", status_code=200)
async def ready_pickup(
    request: Request[Any, Any, Any],
    courier: NamedDependency[CourierSandbox],
    pickup_id: FromPath[str],
) -> Response[bytes]:
    key = idempotency_key(request)
    if key is None:
        return respond(MISSING_KEY)
    fingerprint = f"ready:{pickup_id}".encode()
    return respond(courier.keys.run(key, fingerprint, lambda: courier.mark_ready(pickup_id)))


@post("/pickups/{pickup_id:str}/cancel", status_code=200)
async def cancel_pickup(
    request: Request[Any, Any, Any],
    courier: NamedDependency[CourierSandbox],
    pickup_id: FromPath[str],
) -> Response[bytes]:
    key = idempotency_key(request)
    if key is None:
        return respond(MISSING_KEY)
    fingerprint = f"cancel:{pickup_id}".encode()
    return respond(courier.keys.run(key, fingerprint, lambda: courier.cancel(pickup_id)))


@get("/pickups/by-idempotency-key/{key:str}")
async def read_pickup_by_key(
    courier: NamedDependency[CourierSandbox], key: FromPath[str]
) -> Response[bytes]:
    """The pickup a ``POST /pickups`` with this idempotency key booked, as it is now; 404
    when none was booked with it. A client whose request died before it read the answer
    asks here before deciding that no rider was booked."""
    pickup_id = courier.pickup_keys.get(key)
    record = courier.pickups.get(pickup_id) if pickup_id else None
    if record is None:
        return respond(detail(404, f"no pickup booked with idempotency key {key}"))
    return respond(Outcome(200, msgspec.json.encode(record.body())))


@get("/pickups/{pickup_id:str}")
async def read_pickup(
    courier: NamedDependency[CourierSandbox], pickup_id: FromPath[str]
) -> Response[bytes]:
    record = courier.pickups.get(pickup_id)
    if record is None:
        return respond(_no_such_pickup(pickup_id))
    return respond(Outcome(200, msgspec.json.encode(record.body())))


@get("/sandbox/courier/pickups")
async def list_pickups(
    courier: NamedDependency[CourierSandbox], reference: FromQuery[str | None] = None
) -> list[PickupView]:
    """Test inspection: which pickups really exist, our effective calls, their webhooks."""
    return [
        record.view()
        for record in courier.pickups.values()
        if reference is None or record.reference == reference
    ]


class PickupSeed(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``PUT /sandbox/courier/pickups/{id}``: a pickup as a contract test's
    provider state needs it (``a pickup pk_x that a rider has picked up``)."""

    status: PickupStatus
    reference: str = "pact"
    address: str = "Via Roma 1, Napoli"
    callback_url: str = "http://127.0.0.1:9/webhooks/courier"
    idempotency_key: str | None = None  # the key of the POST /pickups that booked it


@put("/sandbox/courier/pickups/{pickup_id:str}")
async def seed_pickup(
    courier: NamedDependency[CourierSandbox], pickup_id: FromPath[str], data: JSONBody[PickupSeed]
) -> PickupView:
    """Test set-up: put a pickup with a known id in a known state (no rider autopilot)."""
    request = PickupRequest(
        reference=data.reference, address=data.address, callback_url=data.callback_url
    )
    record = PickupRecord(pickup_id, request)
    record.status = data.status
    if data.status in ("assigned", "picked_up", "delivered"):
        record.rider = "Pact R."
    courier.pickups[pickup_id] = record
    if data.idempotency_key is not None:
        courier.pickup_keys[data.idempotency_key] = pickup_id
    return record.view()


@post("/sandbox/courier/pickups/{pickup_id:str}/events", status_code=200)
async def send_event(
    request: Request[Any, Any, Any],
    courier: NamedDependency[CourierSandbox],
    pickup_id: FromPath[str],
) -> Response[Any]:
    """Manual control: move the pickup and deliver that webhook now (with retries)."""
    try:
        event = msgspec.json.decode(await request.body(), type=ManualEvent)
    except msgspec.ValidationError as exc:
        return respond(detail(422, f"invalid event: {exc}"))
    except msgspec.DecodeError as exc:
        return respond(detail(400, f"invalid JSON: {exc}"))
    result = await courier.send_now(pickup_id, event.type, webhook=event.webhook)
    if result is None:
        return respond(_no_such_pickup(pickup_id))
    return Response(content=result, status_code=200)


def courier_router() -> Router:
    """The partner API; every call goes through the courier knobs first."""
    return Router(
        path="/courier/v1",
        route_handlers=[
            request_pickup,
            ready_pickup,
            cancel_pickup,
            read_pickup_by_key,
            read_pickup,
        ],
        before_request=knob_gate("courier"),
        middleware=[late_answer("courier")],
    )


COURIER_INSPECTION_HANDLERS = (list_pickups, seed_pickup, send_event)
