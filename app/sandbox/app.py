"""Sandbox partners: a fake payment provider and a fake delivery partner (courier).

This is a separate, tiny ASGI app that runs in its own process and port, so the shop's
adapters, timeouts and circuit breakers are exercised over real network calls. The payment
provider behaves like one in test mode: magic card numbers, idempotency keys with exact
replay. The courier (``app.sandbox.courier``) requests riders, sends signed webhooks and
plays its riders on autopilot. Knobs per partner inject latency, random 5xx and outages
(``app.sandbox.common``). Everything lives in memory in objects created per app, so each
test can build a fresh app.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, Request, Response, Router, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody

from app.sandbox.common import (
    MISSING_KEY,
    PARTNERS,
    IdempotencyStore,
    KnobPanel,
    Knobs,
    KnobsUpdate,
    Outcome,
    Partner,
    detail,
    idempotency_key,
    knob_gate,
    knob_panel_of,
    late_answer,
    respond,
)
from app.sandbox.courier import (
    COURIER_INSPECTION_HANDLERS,
    CourierConfig,
    CourierSandbox,
    courier_of,
    courier_router,
)

Operation = Literal["capture", "void", "refund"]

CARD_DECLINED = "Your card was declined."
INSUFFICIENT_FUNDS = "Insufficient funds."
INCORRECT_NUMBER = "Your card number is incorrect."

# Magic test cards, as real providers document them. Anything else is judged by shape.
_MAGIC_DECLINES: dict[str, str] = {
    "4000000000000002": CARD_DECLINED,
    "4000000000009995": INSUFFICIENT_FUNDS,
}


# --------------------------------------------------------------------------- wire formats


class ChargeRequest(msgspec.Struct, rename="camel", frozen=True):
    """Body of ``POST /payments/v1/charges``; validation failures are a 400. The card is
    a payment-method token from ``POST /payments/v1/payment-methods``."""

    amount: Annotated[int, msgspec.Meta(gt=0)]
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
    payment_method: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class PaymentMethodRequest(msgspec.Struct, rename="camel", frozen=True):
    """Body of ``POST /payments/v1/payment-methods``: the card, exchanged for a token."""

    card_number: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class PaymentMethodBody(msgspec.Struct, rename="camel"):
    """A stored card as the provider shows it: never the number again."""

    id: str
    brand: str
    last4: str


class ChargeBody(msgspec.Struct, rename="camel"):
    """A charge as the provider API returns it."""

    id: str
    status: str
    amount: int
    currency: str
    reference: str
    decline_reason: str | None


class ChargeView(msgspec.Struct, rename="camel"):
    """A charge as the test-inspection API shows it, with its history of operations."""

    id: str
    status: str
    amount: int
    currency: str
    reference: str
    operations: list[str]


# --------------------------------------------------------------------------- card rules


def luhn_valid(number: str) -> bool:
    """The checksum every real card number satisfies; catches typos."""
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def brand_of(card_number: str) -> str:
    """The card network, from the number's first digits."""
    if card_number.startswith("4"):
        return "visa"
    if card_number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= card_number[:4] <= "2720":
        return "mastercard"
    if card_number[:2] in {"34", "37"}:
        return "amex"
    return "card"


def decline_reason_for(card_number: str) -> str | None:
    """Why this card would be declined, or ``None`` if the charge goes through."""
    if card_number in _MAGIC_DECLINES:
        return _MAGIC_DECLINES[card_number]
    well_formed = card_number.isascii() and card_number.isdigit() and 12 <= len(card_number) <= 19
    if not well_formed or not luhn_valid(card_number):
        return INCORRECT_NUMBER
    return None


# --------------------------------------------------------------------------- state


class CardVault:
    """The sandbox's card store, without state: a payment-method token is the card number
    sealed under ``SANDBOX_VAULT_KEY`` (HMAC-SHA256 keystream + tag), so every sandbox
    process sharing the key can charge it, and a restart loses no pending payment. The
    same card gives the same token (a retried checkout charges the same method). Only
    the sandbox can open a token; the shop stores it as an opaque id."""

    PREFIX = "pm_"

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_env(cls) -> CardVault:
        configured = os.environ.get("SANDBOX_VAULT_KEY", "")
        return cls(configured.encode() if configured else secrets.token_bytes(32))

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._key, b"".join(parts), hashlib.sha256).digest()

    def seal(self, number: str) -> str:
        plain = number.encode()
        nonce = self._mac(b"nonce", plain)[:12]
        sealed = bytes(a ^ b for a, b in zip(plain, self._mac(b"stream", nonce), strict=False))
        tag = self._mac(b"tag", nonce, sealed)[:12]
        return self.PREFIX + base64.urlsafe_b64encode(nonce + sealed + tag).decode().rstrip("=")

    def open(self, token: str) -> str | None:
        """The card number inside ``token``, or None for a token we did not make."""
        if not token.startswith(self.PREFIX):
            return None
        raw = token[len(self.PREFIX) :]
        try:
            blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (ValueError, binascii.Error):
            return None
        nonce, sealed, tag = blob[:12], blob[12:-12], blob[-12:]
        if len(blob) < 25 or not hmac.compare_digest(tag, self._mac(b"tag", nonce, sealed)[:12]):
            return None
        plain = bytes(a ^ b for a, b in zip(sealed, self._mac(b"stream", nonce), strict=False))
        return plain.decode("ascii", "replace")


class ChargeRecord(msgspec.Struct):
    """The provider's own record of one charge."""

    id: str
    status: str
    amount: int
    currency: str
    reference: str
    decline_reason: str | None
    operations: list[str]

    def body(self) -> ChargeBody:
        return ChargeBody(
            id=self.id,
            status=self.status,
            amount=self.amount,
            currency=self.currency,
            reference=self.reference,
            decline_reason=self.decline_reason,
        )

    def view(self) -> ChargeView:
        return ChargeView(
            id=self.id,
            status=self.status,
            amount=self.amount,
            currency=self.currency,
            reference=self.reference,
            operations=list(self.operations),
        )


class SandboxState:
    """All in-memory state of the sandbox payment provider; ``reset`` forgets everything."""

    def __init__(self) -> None:
        self.charges: dict[str, ChargeRecord] = {}
        #: payment-method tokens; kept across ``reset`` like a real provider's vault
        self.vault = CardVault.from_env()
        #: tokens a test set up with known names (provider states of the contract tests)
        self.seeded_methods: dict[str, str] = {}
        self.keys = IdempotencyStore()
        #: which charge an idempotency key made (so a client that lost the answer can ask)
        self.charge_keys: dict[str, str] = {}
        self.operation_counts: dict[Operation, int] = {}
        self.reset()

    def reset(self) -> None:
        """Back to defaults: no charges, no keys."""
        self.charges.clear()
        self.keys.clear()
        self.charge_keys.clear()
        self.operation_counts = {"capture": 0, "void": 0, "refund": 0}

    def idempotent(self, key: str, fingerprint: bytes, operation: Callable[[], Outcome]) -> Outcome:
        return self.keys.run(key, fingerprint, operation)

    def create_payment_method(self, request: PaymentMethodRequest) -> Outcome:
        number = request.card_number.replace(" ", "").replace("-", "")
        if not (number.isascii() and number.isdigit() and 12 <= len(number) <= 19):
            return detail(400, INCORRECT_NUMBER)
        token = self.vault.seal(number)
        body = PaymentMethodBody(id=token, brand=brand_of(number), last4=number[-4:])
        return Outcome(201, msgspec.json.encode(body))

    def create_charge(self, request: ChargeRequest, key: str) -> Outcome:
        card_number = self.seeded_methods.get(request.payment_method) or self.vault.open(
            request.payment_method
        )
        if card_number is None:
            return detail(404, f"no such payment method: {request.payment_method}")
        decline_reason = decline_reason_for(card_number)
        record = ChargeRecord(
            id=f"ch_{secrets.token_hex(12)}",
            status="declined" if decline_reason else "captured",
            amount=request.amount,
            currency=request.currency,
            reference=request.reference,
            decline_reason=decline_reason,
            operations=[],
        )
        self.charges[record.id] = record
        self.charge_keys[key] = record.id
        if decline_reason is None:
            self._applied(record, "capture")
        return Outcome(402 if decline_reason else 201, msgspec.json.encode(record.body()))

    def transition(self, charge_id: str, operation: Operation, new_status: str) -> Outcome:
        """Void or refund a charge; both are only possible from ``captured``."""
        record = self.charges.get(charge_id)
        if record is None:
            return detail(404, f"no such charge: {charge_id}")
        if record.status != "captured":
            return detail(
                409, f"cannot {operation} a charge that is {record.status}; it must be captured"
            )
        record.status = new_status
        self._applied(record, operation)
        return Outcome(200, msgspec.json.encode(record.body()))

    def _applied(self, record: ChargeRecord, operation: Operation) -> None:
        record.operations.append(operation)
        self.operation_counts[operation] += 1


# --------------------------------------------------------------------------- HTTP layer


def _sandbox_of(state: State) -> SandboxState:
    sandbox = state["sandbox"]
    assert isinstance(sandbox, SandboxState)
    return sandbox


def _partner(name: str) -> Partner:
    for partner in PARTNERS:
        if partner == name:
            return partner
    raise NotFoundException(f"unknown partner: {name}")


@post("/payment-methods")
async def create_payment_method(
    request: Request[Any, Any, Any], sandbox: NamedDependency[SandboxState]
) -> Response[bytes]:
    """Tokenize a card: the only call that ever carries a card number."""
    try:
        body = msgspec.json.decode(await request.body(), type=PaymentMethodRequest)
    except msgspec.DecodeError as exc:
        return respond(detail(400, f"invalid payment method request: {exc}"))
    return respond(sandbox.create_payment_method(body))


@post("/charges")
async def create_charge(
    request: Request[Any, Any, Any], sandbox: NamedDependency[SandboxState]
) -> Response[bytes]:
    key = idempotency_key(request)
    if key is None:
        return respond(MISSING_KEY)
    try:
        body = msgspec.json.decode(await request.body(), type=ChargeRequest)
    except msgspec.DecodeError as exc:
        return respond(detail(400, f"invalid charge request: {exc}"))
    fingerprint = b"charge:" + msgspec.json.encode(body)
    return respond(sandbox.idempotent(key, fingerprint, lambda: sandbox.create_charge(body, key)))


async def _transition(
    request: Request[Any, Any, Any],
    sandbox: SandboxState,
    charge_id: str,
    operation: Operation,
    new_status: str,
) -> Response[bytes]:
    key = idempotency_key(request)
    if key is None:
        return respond(MISSING_KEY)
    fingerprint = f"{operation}:{charge_id}".encode()
    return respond(
        sandbox.idempotent(
            key, fingerprint, lambda: sandbox.transition(charge_id, operation, new_status)
        )
    )


@post("/charges/{charge_id:str}/void")
async def void_charge(
    request: Request[Any, Any, Any],
    sandbox: NamedDependency[SandboxState],
    charge_id: FromPath[str],
) -> Response[bytes]:
    return await _transition(request, sandbox, charge_id, "void", "voided")


@post("/charges/{charge_id:str}/refund")
async def refund_charge(
    request: Request[Any, Any, Any],
    sandbox: NamedDependency[SandboxState],
    charge_id: FromPath[str],
) -> Response[bytes]:
    return await _transition(request, sandbox, charge_id, "refund", "refunded")


@get("/charges/by-idempotency-key/{key:str}")
async def read_charge_by_key(
    sandbox: NamedDependency[SandboxState], key: FromPath[str]
) -> Response[bytes]:
    """The charge a ``POST /charges`` with this idempotency key made, as it is now; 404
    when no charge was made with it. A client whose charge call died before it read the
    answer asks here before deciding that no money moved."""
    charge_id = sandbox.charge_keys.get(key)
    record = sandbox.charges.get(charge_id) if charge_id else None
    if record is None:
        return respond(detail(404, f"no charge made with idempotency key {key}"))
    return respond(Outcome(200, msgspec.json.encode(record.body())))


@get("/charges/{charge_id:str}")
async def read_charge(
    sandbox: NamedDependency[SandboxState], charge_id: FromPath[str]
) -> Response[bytes]:
    record = sandbox.charges.get(charge_id)
    if record is None:
        return respond(detail(404, f"no such charge: {charge_id}"))
    return respond(Outcome(200, msgspec.json.encode(record.body())))


@get("/sandbox/payments/charges")
async def list_charges(
    sandbox: NamedDependency[SandboxState], reference: FromQuery[str | None] = None
) -> list[ChargeView]:
    """Test inspection: which charges really exist (replays never add one)."""
    return [
        record.view()
        for record in sandbox.charges.values()
        if reference is None or record.reference == reference
    ]


class ChargeSeed(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``PUT /sandbox/payments/charges/{id}``: a charge as a contract test's
    provider state needs it (``a captured charge ch_x exists``)."""

    status: Literal["captured", "declined", "voided", "refunded"]
    amount: int = 3100
    currency: str = "EUR"
    reference: str = "pact"
    idempotency_key: str | None = None  # the key of the POST /charges that made it


class PaymentMethodSeed(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``PUT /sandbox/payments/payment-methods/{id}`` (provider states)."""

    card_number: str


@put("/sandbox/payments/payment-methods/{token:str}")
async def seed_payment_method(
    sandbox: NamedDependency[SandboxState], token: FromPath[str], data: JSONBody[PaymentMethodSeed]
) -> dict[str, str]:
    """Test set-up: a stored card with a known token (``a payment method pm_x exists``)."""
    sandbox.seeded_methods[token] = data.card_number
    return {"id": token}


@put("/sandbox/payments/charges/{charge_id:str}")
async def seed_charge(
    sandbox: NamedDependency[SandboxState], charge_id: FromPath[str], data: JSONBody[ChargeSeed]
) -> ChargeView:
    """Test set-up: put a charge with a known id in a known state (provider states)."""
    record = ChargeRecord(
        id=charge_id,
        status=data.status,
        amount=data.amount,
        currency=data.currency,
        reference=data.reference,
        decline_reason=None,
        operations=[],
    )
    sandbox.charges[charge_id] = record
    if data.idempotency_key is not None:
        sandbox.charge_keys[data.idempotency_key] = charge_id
    return record.view()


@get("/sandbox/payments/operations")
async def operation_counts(sandbox: NamedDependency[SandboxState]) -> dict[str, int]:
    """Test inspection: how many captures, voids and refunds actually took effect."""
    return {operation: count for operation, count in sandbox.operation_counts.items()}


@get("/sandbox/knobs")
async def read_knobs(knobs: NamedDependency[KnobPanel]) -> dict[str, Knobs]:
    return {partner: value for partner, value in knobs.knobs.items()}


@put("/sandbox/knobs/{partner_name:str}")
async def update_knobs(
    request: Request[Any, Any, Any],
    knobs: NamedDependency[KnobPanel],
    partner_name: FromPath[str],
) -> Response[Any]:
    partner = _partner(partner_name)
    try:
        update = msgspec.json.decode(await request.body(), type=KnobsUpdate)
    except msgspec.ValidationError as exc:
        return respond(detail(422, f"invalid knobs: {exc}"))
    except msgspec.DecodeError as exc:
        return respond(detail(400, f"invalid JSON: {exc}"))
    return Response(content=knobs.update(partner, update), status_code=200)


@post("/sandbox/reset", status_code=200)
async def reset(
    sandbox: NamedDependency[SandboxState],
    knobs: NamedDependency[KnobPanel],
    courier: NamedDependency[CourierSandbox],
) -> dict[str, str]:
    """Back to defaults: well-behaved partners, no charges, no pickups, no riders on the road."""
    knobs.reset()
    sandbox.reset()
    await courier.reset()
    return {"status": "reset"}


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


async def _shutdown(app: Litestar) -> None:
    await courier_of(app.state).aclose()


def create_sandbox_app(courier: CourierConfig | None = None) -> Litestar:
    """A fresh sandbox with its own in-memory state (one per process, or per test).

    ``courier`` defaults to ``CourierConfig.from_env()``, read now.
    """
    payments = Router(
        path="/payments/v1",
        route_handlers=[
            create_payment_method,
            create_charge,
            void_charge,
            refund_charge,
            read_charge_by_key,
            read_charge,
        ],
        before_request=knob_gate("payment"),
        middleware=[late_answer("payment")],
    )
    state = State(
        {
            "knobs": KnobPanel(),
            "sandbox": SandboxState(),
            "courier": CourierSandbox(courier or CourierConfig.from_env()),
        }
    )
    return Litestar(
        route_handlers=[
            payments,
            courier_router(),
            list_charges,
            seed_charge,
            seed_payment_method,
            operation_counts,
            *COURIER_INSPECTION_HANDLERS,
            read_knobs,
            update_knobs,
            reset,
            health,
        ],
        dependencies={
            "sandbox": Provide(_sandbox_of, sync_to_thread=False),
            "knobs": Provide(knob_panel_of, sync_to_thread=False),
            "courier": Provide(courier_of, sync_to_thread=False),
        },
        state=state,
        on_shutdown=[_shutdown],
        openapi_config=None,
        logging_config=None,  # `pizzeria sandbox` configures logging (app.platform.logs)
    )
