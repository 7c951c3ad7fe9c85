"""Consumer side of the delivery partner contracts:

- HTTP: the shop's courier adapter (``HttpCourierGateway``) against a Pact mock of the
  delivery partner (request a rider, say the food is ready, cancel);
- messages: the webhooks the partner sends, as the shop's webhook endpoint parses them
  (``parse_courier_event``).

The pacts are committed in tests/contracts/pacts and verified against the real sandbox
partner in ``test_partner_verification.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pact import match

from app.delivery.gateway import PICKUPS_PATH, CourierRejected, HttpCourierGateway
from app.delivery.webhooks import parse_courier_event
from app.platform.partner_http import IDEMPOTENCY_HEADER, partner_client
from tests.support.pacts import (
    CONSUMER,
    DELIVERY_PARTNER,
    WEBHOOK_CONSUMER,
    keep_committed_pact_current,
    new_pact,
)

pytestmark = pytest.mark.contracts

PICKUP_ID = match.regex("pk_0123456789abcdef01234567", regex=r"^pk_\w+$")


def key(example: str):  # type: ignore[no-untyped-def]
    """Any idempotency key; each interaction's example differs (see the payment pact)."""
    return match.regex(f"pact-{example}", regex=r"^\S+$")


#: port 9 (discard): the partner's riders in the verification post their webhooks nowhere
CALLBACK = "http://127.0.0.1:9/webhooks/courier"
ISO_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
#: every webhook the shop acts on, and the pickup state the partner sends it from
WEBHOOKS = {
    "rider_assigned": "requested",
    "picked_up": "assigned",
    "delivered": "picked_up",
    "cancelled": "requested",
}


def _booking(  # type: ignore[no-untyped-def]
    pact, description: str, key_example: str, reference: str, address: str, **more: object
) -> None:
    """A ``POST /pickups`` the partner answers with a new pickup (``more``: the booking's
    other fields, as a return's ``ready``)."""
    (
        pact.upon_receiving(description)
        .with_request("POST", PICKUPS_PATH)
        .with_header(IDEMPOTENCY_HEADER, key(key_example))
        .with_body(
            {
                "reference": match.str(reference),
                "address": match.str(address),
                "callbackUrl": match.regex(CALLBACK, regex=r"^https?://\S+$"),
                **more,
            },
            content_type="application/json",
        )
        .will_respond_with(201)
        .with_body(
            {"id": PICKUP_ID, "status": match.str("requested")}, content_type="application/json"
        )
    )


def courier_pact():  # type: ignore[no-untyped-def]
    pact = new_pact(CONSUMER, DELIVERY_PARTNER)
    _booking(pact, "a rider request for an order", "pickup", "dl-1", "Via Roma 1, Napoli")
    _booking(
        pact,
        "a rider request for a return, the pizzas ready at the customer's",
        "return-pickup",
        "dl-7:return",
        "Via Roma 7, Napoli",
        ready=True,
    )
    for action in ("ready", "cancel"):
        (
            pact.upon_receiving(f"{action} for a requested pickup")
            .given("a pickup exists", id=f"pk_pact_{action}", status="requested")
            .with_request("POST", f"{PICKUPS_PATH}/pk_pact_{action}/{action}")
            .with_header(IDEMPOTENCY_HEADER, key(action))
            .will_respond_with(200)
            .with_body({"id": f"pk_pact_{action}"}, content_type="application/json")
        )
    (
        pact.upon_receiving("a cancel after the rider picked the food up")
        .given("a pickup exists", id="pk_pact_picked_up", status="picked_up")
        .with_request("POST", f"{PICKUPS_PATH}/pk_pact_picked_up/cancel")
        .with_header(IDEMPOTENCY_HEADER, key("cancel-picked-up"))
        .will_respond_with(409)
        .with_body({"detail": match.str("the rider has the food")}, content_type="application/json")
    )
    (
        pact.upon_receiving("a look-up of the pickup an idempotency key booked")
        .given(
            "a pickup exists", id="pk_pact_lookup", status="assigned", idempotencyKey="dl-5:pickup"
        )
        .with_request("GET", f"{PICKUPS_PATH}/by-idempotency-key/dl-5%3Apickup")
        .will_respond_with(200)
        .with_body(
            {"id": "pk_pact_lookup", "status": match.regex("assigned", regex=r"^\w+$")},
            content_type="application/json",
        )
    )
    (
        pact.upon_receiving("a look-up of a key that booked no pickup")
        .with_request("GET", f"{PICKUPS_PATH}/by-idempotency-key/dl-6%3Apickup")
        .will_respond_with(404)
    )
    return pact


def webhook_pact():  # type: ignore[no-untyped-def]
    pact = new_pact(WEBHOOK_CONSUMER, DELIVERY_PARTNER)
    for event_type, before in WEBHOOKS.items():
        rider = None if event_type == "cancelled" else {"name": match.str("Giulia R.")}
        (
            pact.upon_receiving(f"a {event_type} webhook", "Async")
            .given("a pickup exists", id="pk_pact_webhook", status=before)
            .with_body(
                {
                    "eventId": match.regex("ev_0123456789abcdef01234567", regex=r"^ev_\w+$"),
                    "type": event_type,
                    "pickupId": "pk_pact_webhook",
                    "reference": match.str("dl-1"),
                    "rider": rider,
                    "occurredAt": match.regex("2026-11-30T12:00:00.123456+00:00", regex=ISO_TIME),
                },
                content_type="application/json",
            )
        )
    return pact


async def test_the_courier_adapter_keeps_its_contract_with_the_partner(tmp_path: Path) -> None:
    pact = courier_pact()
    with pact.serve() as server:
        async with HttpCourierGateway(partner_client(str(server.url), 10)) as gateway:
            pickup = await gateway.request_pickup(
                reference="dl-1",
                address="Via Roma 1, Napoli",
                callback_url=CALLBACK,
                idempotency_key="dl-1:courier",
            )
            collected = await gateway.request_pickup(
                reference="dl-7:return",
                address="Via Roma 7, Napoli",
                callback_url=CALLBACK,
                idempotency_key="dl-7:return-1-pickup",
                ready=True,
            )
            await gateway.mark_ready(partner_ref="pk_pact_ready", idempotency_key="dl-2:ready")
            await gateway.cancel_pickup(partner_ref="pk_pact_cancel", idempotency_key="dl-3:x")
            with pytest.raises(CourierRejected) as refused:
                await gateway.cancel_pickup(
                    partner_ref="pk_pact_picked_up", idempotency_key="dl-4:x"
                )
            found = await gateway.find_pickup(idempotency_key="dl-5:pickup")
            never = await gateway.find_pickup(idempotency_key="dl-6:pickup")
    assert pickup.partner_ref.startswith("pk_") and pickup.status == "requested"
    assert collected.partner_ref.startswith("pk_")
    assert refused.value.status_code == 409
    assert found is not None and (found.partner_ref, found.status) == ("pk_pact_lookup", "assigned")
    assert never is None
    keep_committed_pact_current(pact, tmp_path)


def test_the_webhook_endpoint_understands_every_webhook_the_partner_sends(
    tmp_path: Path,
) -> None:
    pact = webhook_pact()
    understood: list[str] = []

    def receive(body: str | bytes | None, metadata: dict[str, object]) -> None:
        assert body is not None
        raw = body.encode() if isinstance(body, str) else body
        event, at = parse_courier_event(raw)
        assert at.tzinfo is not None
        assert (event.rider is None) == (event.type == "cancelled")
        understood.append(event.type)
        json.loads(raw)  # the exact bytes are plain JSON, as the signature covers them

    pact.verify(receive, "Async")
    assert sorted(understood) == sorted(WEBHOOKS)
    keep_committed_pact_current(pact, tmp_path)
