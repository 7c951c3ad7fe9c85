"""What every sandbox partner shares: misbehaviour knobs and idempotency-key replay."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.types import ASGIApp, Message, Receive, Scope, Send

Partner = Literal["payment", "courier"]
PARTNERS: tuple[Partner, ...] = ("payment", "courier")

IDEMPOTENCY_HEADER = "Idempotency-Key"


class Knobs(msgspec.Struct, rename="camel"):
    """How badly a partner misbehaves right now."""

    latency_ms: int = 0
    error_rate: float = 0.0
    down: bool = False
    #: the partner does the work at once but answers this late (a client that times out
    #: meanwhile does not know its request took effect)
    answer_delay_ms: int = 0


class KnobsUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A partial update of ``Knobs``: fields left out keep their value."""

    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] | msgspec.UnsetType = msgspec.UNSET
    error_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | msgspec.UnsetType = msgspec.UNSET
    down: bool | msgspec.UnsetType = msgspec.UNSET
    answer_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] | msgspec.UnsetType = (
        msgspec.UNSET
    )


class Outcome(msgspec.Struct, frozen=True):
    """What an operation answered: a status code and an encoded JSON body."""

    status_code: int
    body: bytes


def detail(status_code: int, text: str) -> Outcome:
    return Outcome(status_code, msgspec.json.encode({"detail": text}))


MISSING_KEY = detail(400, f"{IDEMPOTENCY_HEADER} header is required")


def respond(outcome: Outcome) -> Response[bytes]:
    return Response(
        content=outcome.body, status_code=outcome.status_code, media_type="application/json"
    )


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    return key or None


class KnobPanel:
    """The knobs of every partner, shared by the whole sandbox app."""

    def __init__(self) -> None:
        self._random = random.Random()
        self.knobs: dict[Partner, Knobs] = {}
        self.reset()

    def reset(self) -> None:
        """Every partner well-behaved again."""
        self.knobs = {partner: Knobs() for partner in PARTNERS}

    def update(self, partner: Partner, update: KnobsUpdate) -> Knobs:
        changes = {
            name: value
            for name in KnobsUpdate.__struct_fields__
            if (value := getattr(update, name)) is not msgspec.UNSET
        }
        self.knobs[partner] = msgspec.structs.replace(self.knobs[partner], **changes)
        return self.knobs[partner]

    async def disturb(self, partner: Partner) -> Outcome | None:
        """Apply the partner's knobs: wait, then maybe fail before anything is recorded."""
        knobs = self.knobs[partner]
        if knobs.latency_ms > 0:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if knobs.down:
            return detail(503, f"{partner} provider unavailable")
        if self._random.random() < knobs.error_rate:
            return detail(500, "internal error")
        return None


def knob_panel_of(state: State) -> KnobPanel:
    panel = state["knobs"]
    assert isinstance(panel, KnobPanel)
    return panel


def knob_gate(
    partner: Partner,
) -> Callable[[Request[Any, Any, Any]], Awaitable[Response[bytes] | None]]:
    """A ``before_request`` hook: every call of ``partner``'s API goes through its knobs."""

    async def gate(request: Request[Any, Any, Any]) -> Response[bytes] | None:
        outcome = await knob_panel_of(request.app.state).disturb(partner)
        return respond(outcome) if outcome else None

    return gate


def late_answer(partner: Partner) -> Callable[[ASGIApp], ASGIApp]:
    """An ASGI middleware: the handler does its work at once, and the answer leaves
    ``answerDelayMs`` later (what a client with a shorter timeout never reads)."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def late(scope: Scope, receive: Receive, send: Send) -> None:
            delay = knob_panel_of(scope["app"].state).knobs[partner].answer_delay_ms
            if delay <= 0:
                await app(scope, receive, send)
                return

            async def send_late(message: Message) -> None:
                if message["type"] == "http.response.start":
                    await asyncio.sleep(delay / 1000)
                await send(message)

            await app(scope, receive, send_late)

        return late

    return middleware


class StoredResponse(msgspec.Struct, frozen=True):
    """A response remembered under an idempotency key, replayed byte for byte."""

    fingerprint: bytes
    status_code: int
    body: bytes


class IdempotencyStore:
    """One partner's idempotency keys (partners never see each other's keys)."""

    def __init__(self) -> None:
        self.responses: dict[str, StoredResponse] = {}

    def clear(self) -> None:
        self.responses.clear()

    def run(self, key: str, fingerprint: bytes, operation: Callable[[], Outcome]) -> Outcome:
        """Run ``operation`` once per key; a replay returns exactly the first answer.

        Only answers the operation itself produced are remembered (2xx, declines, refused
        transitions); a 404 is not, so the caller can still use the key for a real call.
        """
        stored = self.responses.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                return detail(409, "idempotency key reused with different parameters")
            return Outcome(stored.status_code, stored.body)
        outcome = operation()
        if outcome.status_code != 404:
            self.responses[key] = StoredResponse(fingerprint, outcome.status_code, outcome.body)
        return outcome
