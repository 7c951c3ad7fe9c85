"""Staff operations: the partner simulator (sandbox knobs) and the breakers' state.

The knobs live in the sandbox partners themselves; we reach them over HTTP like any
partner API, so a real deployment simply has no simulator (the sandbox is not there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.operations.watchdog import stalled as stalled  # stuck work, for where staff work
from app.platform.errors import FieldError, InvalidInput, Unavailable
from app.platform.i18n import N_
from app.platform.security import Principal
from app.platform.settings import Settings
from app.platform.uow import complete

Partner = Literal["payment", "courier"]
PARTNERS: tuple[Partner, ...] = ("payment", "courier")


def _sandbox_url(settings: Settings, partner: Partner) -> str:
    return settings.partners.payment_url if partner == "payment" else settings.partners.courier_url


async def _sandbox(settings: Settings, partner: Partner, method: str, body: Any = None) -> Any:
    url = f"{_sandbox_url(settings, partner)}/sandbox/knobs"
    if method == "PUT":
        url += f"/{partner}"
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            response = await client.request(method, url, json=body)
    except httpx.HTTPError as exc:
        raise Unavailable(N_("the sandbox partners are not reachable"), retry_after=5) from exc
    if response.status_code >= 400:
        raise InvalidInput.single("knobs", str(response.json().get("detail", response.text)))
    return response.json()


async def partner_knobs(settings: Settings) -> dict[str, Any]:
    knobs: dict[str, Any] = {}
    for partner in PARTNERS:
        knobs[partner] = (await _sandbox(settings, partner, "GET"))[partner]
    return knobs


#: the knobs in our words, and as the sandbox partners' API spells them
KNOB_WIRE_NAMES = {
    "latency_ms": "latencyMs",
    "error_rate": "errorRate",
    "down": "down",
    "answer_delay_ms": "answerDelayMs",
}


#: each number knob: how it is read, its bounds, and what is said when it is outside them
_NUMBER_KNOBS: tuple[tuple[str, Callable[[Any], float], float, float, str], ...] = (
    ("latency_ms", int, 0, 60_000, N_("Latency is 0 to 60000 ms.")),
    ("error_rate", float, 0.0, 1.0, N_("Error rate is between 0 and 1.")),
    ("answer_delay_ms", int, 0, 600_000, N_("The answer delay is 0 to 600000 ms.")),
)


def parse_knobs(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate knob input (``latency_ms``, ``error_rate``, ``down``, ``answer_delay_ms``,
    any subset); 422 naming the field."""
    knobs: dict[str, Any] = {}
    errors = []
    for name, read, low, high, message in _NUMBER_KNOBS:
        if raw.get(name) in (None, ""):
            continue
        try:
            value = read(raw[name])
            if not low <= value <= high:
                raise ValueError
        except (TypeError, ValueError):
            errors.append((name, message))
            continue
        knobs[name] = value
    if "down" in raw:
        down = raw["down"]
        knobs["down"] = down if isinstance(down, bool) else str(down).lower() in {"1", "true", "on"}
    if errors:
        raise InvalidInput([FieldError(f, m) for f, m in errors])
    return knobs


async def set_knobs(settings: Settings, partner: str, raw: dict[str, Any]) -> dict[str, Any]:
    if partner not in PARTNERS:
        raise InvalidInput.single("partner", N_("Choose payment or courier."))
    knobs = parse_knobs(raw)
    wire = {KNOB_WIRE_NAMES[name]: value for name, value in knobs.items()}
    result: dict[str, Any] = await _sandbox(settings, partner, "PUT", wire)
    return result


async def change_knobs(
    session: AsyncSession, settings: Settings, who: Principal, partner: str, knobs: Any
) -> dict[str, Any]:
    """Staff turn a simulated partner's knobs; the audit trail says who and to what."""
    applied = await set_knobs(settings, partner, knobs)
    audit.record(session, who, "partner.knobs", f"partner:{partner}", **applied)
    await complete(session)
    return applied
