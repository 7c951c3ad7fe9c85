"""The delivery partner's webhook: signed with HMAC, deduplicated by its event id."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from app.delivery import partner_news
from app.delivery.gateway import CourierEvent
from app.platform.access import access
from app.platform.bodies import SMALL_BODY
from app.platform.errors import InvalidInput, NotAuthenticated
from app.platform.i18n import N_
from app.platform.outbox import claim
from app.platform.settings import Settings
from app.platform.signing import verify
from app.platform.uow import complete

SIGNATURE_HEADER = "x-courier-signature"
HANDLER = "delivery.courier_webhook"
_NAMESPACE = uuid.UUID("5b0c1c1e-4f3a-4e7e-9d55-6a2b8f1f0c11")


@post(
    "/webhooks/courier",
    status_code=200,
    tags=["webhooks"],
    opt=access("public"),
    request_max_body_size=SMALL_BODY,
)
async def courier_webhook(
    request: Request[Any, Any, Any],
    db: NamedDependency[AsyncSession],
    settings: NamedDependency[Settings],
) -> dict[str, str]:
    """Rider assigned, picked up, delivered: applied once per partner event id."""
    body = await request.body()
    signature = request.headers.get(SIGNATURE_HEADER)
    secrets = settings.partners.courier_webhook_secrets  # current and previous
    if not any([verify(secret, body, signature) for secret in secrets]):
        raise NotAuthenticated(N_("bad webhook signature"))
    event, at = parse_courier_event(body)
    if await claim(db, HANDLER, uuid.uuid5(_NAMESPACE, event.event_id)):
        rider = event.rider.name if event.rider else None
        await partner_news.apply(
            db,
            event.pickup_id,
            event.type,
            rider,
            at,
            reference=event.reference,
            eta=_when(event.estimated_delivery_at),
        )
    await complete(db)  # the news and its inbox row, or neither
    return {"status": "ok"}


def parse_courier_event(body: bytes) -> tuple[CourierEvent, datetime]:
    """A verified webhook body as the shop understands it (the partner's side of this is
    pinned by the message contract in tests/contracts)."""
    try:
        event = msgspec.json.decode(body, type=CourierEvent)
        return event, datetime.fromisoformat(event.occurred_at)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise InvalidInput.single("body", str(exc)) from exc


def _when(value: str | None) -> datetime | None:
    """The partner's estimate as a time, or None when it sent none (or nonsense)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
