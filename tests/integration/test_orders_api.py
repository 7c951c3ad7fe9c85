"""The JSON API against the real shop processes (web, relay, arq workers, sandbox)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.api import (
    DECLINED_CARD,
    PASSWORD,
    auth,
    new_customer,
    order_body,
    wait_for_status,
)


async def test_health_probes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_signup_token_and_their_refusals(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client, name="Ada")
    again = await client.post(
        "/api/auth/signup",
        json={"email": customer["email"].upper(), "password": PASSWORD, "name": "X"},
    )
    assert again.status_code == 409 and "exists" in again.json()["detail"]
    short = await client.post(
        "/api/auth/signup", json={"email": "x@example.com", "password": "short", "name": "X"}
    )
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "password"
    missing = await client.post("/api/auth/signup", json={"email": "x@example.com"})
    assert missing.status_code == 422 and "password" in missing.json()["detail"]
    wrong = await client.post(
        "/api/auth/token", data={"username": customer["email"], "password": "not-the-password"}
    )
    assert wrong.status_code == 401


async def test_api_routes_need_a_valid_bearer_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/menu")).status_code == 401
    bad = await client.get("/api/menu", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["detail"]
    assert (await client.post("/api/orders", json=order_body())).status_code == 401


async def test_menu_lists_pizzas_with_prices(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    menu = (await client.get("/api/menu", headers=auth(customer))).json()
    assert len(menu) >= 5
    assert set(menu[0]) == {"id", "name", "description", "price", "currency"}
    assert all(isinstance(p["price"], int) and p["price"] > 0 for p in menu)


async def test_an_order_is_paid_by_the_workers(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    response = await client.post("/api/orders", json=order_body(), headers=auth(customer))
    assert response.status_code == 201, response.text
    view = response.json()
    assert view["status"] == "placed" and view["totalAmount"] == 2 * 15_900 + 18_900  # won
    assert view["items"][0] == {"pizzaId": 1, "name": "Margherita", "qty": 2, "unitPrice": 15_900}
    assert view["delivery"] is None and view["coupon"] is None and view["refund"] is None

    paid = await wait_for_status(client, customer, view["id"], "paid")
    assert paid["payment"] == {"status": "captured", "failureReason": None}
    assert [step["status"] for step in paid["timeline"]][:2] == ["placed", "paid"]
    listed = (await client.get("/api/orders", headers=auth(customer))).json()
    assert [o["id"] for o in listed] == [view["id"]]


async def test_a_declined_card_ends_in_payment_failed_with_the_reason(
    client: httpx.AsyncClient,
) -> None:
    customer = await new_customer(client)
    response = await client.post(
        "/api/orders", json=order_body(card=DECLINED_CARD), headers=auth(customer)
    )
    failed = await wait_for_status(client, customer, response.json()["id"], "payment_failed")
    assert failed["payment"] == {"status": "failed", "failureReason": "Your card was declined."}
    assert failed["timeline"][-1]["detail"] == "Your card was declined."


async def test_twenty_concurrent_requests_with_one_key_make_one_order(
    client: httpx.AsyncClient,
) -> None:
    customer = await new_customer(client)
    headers = {**auth(customer), "Idempotency-Key": "double-click-42"}
    responses = await asyncio.gather(
        *(client.post("/api/orders", json=order_body(), headers=headers) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
    listed = (await client.get("/api/orders", headers=auth(customer))).json()
    assert len(listed) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (order_body(items=[]), "items"),
        (order_body(items=[{"pizzaId": 1, "qty": 0}]), "items[0].qty"),
        (order_body(items=[{"pizzaId": 1, "qty": 21}]), "items[0].qty"),
        (order_body(items=[{"pizzaId": 1, "qty": -3}]), "items[0].qty"),
        (order_body(items=[{"pizzaId": 424242, "qty": 1}]), "items[0].pizzaId"),
        (order_body(items=[{"pizzaId": "one", "qty": 1}]), "items[0].pizzaId"),
        (order_body(address="   "), "address"),
        (order_body(address="Via Roma \u202e1 ,anilopaN"), "address"),  # read backwards
        (order_body(note="ring \u2067twice\u2069"), "note"),
        (order_body(card="not a card"), "cardNumber"),
        (order_body(card="4242424242424241"), "cardNumber"),  # one-digit typo: Luhn
        (order_body(card="4242 4242 4242 4"), "cardNumber"),  # digits missing
        (order_body(card="42424242424242424242"), "cardNumber"),  # too long
        ({"address": "x", "cardNumber": "4242424242424242"}, "items"),
        (order_body(couponCode="PIZZA-" + "A" * 34), "couponCode"),  # longer than its column
        # one pizza over several lines: at most 20 of it, as the basket allows
        (order_body(items=[{"pizzaId": 1, "qty": 20}, {"pizzaId": 1, "qty": 1}]), "items"),
    ],
)
async def test_bad_orders_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    customer = await new_customer(client)
    response = await client.post("/api/orders", json=body, headers=auth(customer))
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]], response.text
    assert (await client.get("/api/orders", headers=auth(customer))).json() == []


async def test_someone_elses_order_and_stream_are_not_found(client: httpx.AsyncClient) -> None:
    alice, bob = await new_customer(client), await new_customer(client)
    order = (await client.post("/api/orders", json=order_body(), headers=auth(alice))).json()
    assert (await client.get(f"/api/orders/{order['id']}", headers=auth(bob))).status_code == 404
    stream = await client.get(f"/api/orders/{order['id']}/events", headers=auth(bob))
    assert stream.status_code == 404
    assert (await client.get("/api/orders", headers=auth(bob))).json() == []


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            event[key] = value.lstrip()


async def test_the_event_stream_sends_the_state_then_each_change(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    customer = await new_customer(client)
    await sandbox.put("/sandbox/knobs/payment", json={"latencyMs": 700})
    try:
        order = (await client.post("/api/orders", json=order_body(), headers=auth(customer))).json()
        statuses: list[str] = []
        url = f"/api/orders/{order['id']}/events"
        async with client.stream("GET", url, headers=auth(customer)) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async with asyncio.timeout(15):
                async for event in _sse_events(response):
                    assert event["event"] == "order" and int(event["id"]) >= 1
                    statuses.append(json.loads(event["data"])["status"])
                    if statuses[-1] == "paid":
                        break
    finally:
        await sandbox.put("/sandbox/knobs/payment", json={"latencyMs": 0})
    assert statuses[0] == "placed" and statuses[-1] == "paid"


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$ref`` (and a nullable ``oneOf``'s non-null member) followed."""
    if "$ref" in schema:
        return _resolved(document, document["components"]["schemas"][schema["$ref"].split("/")[-1]])
    members = [s for s in schema.get("oneOf", []) if s.get("type") != "null"]
    return _resolved(document, members[0]) if len(members) == 1 else schema


async def test_the_schema_says_what_the_api_checks(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    """A client reading the OpenAPI document learns the rules before it is refused: the
    password length, the states a delivery or a refund can be in."""
    document = (await client.get("/schema/openapi.json")).json()
    paths = document["paths"]

    def body_of(path: str) -> dict[str, Any]:
        content = paths[path]["post"]["requestBody"]["content"]["application/json"]
        return _resolved(document, content["schema"])["properties"]

    # how to sign in: Swagger UI's "Authorize", a client generator's auth
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/auth/token"
    assert paths["/api/orders"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/api/auth/token"]["post"]
    assert body_of("/api/auth/signup")["password"]["minLength"] == 12
    assert body_of("/api/auth/password")["newPassword"]["minLength"] == 12
    listing = paths["/api/deliveries"]["get"]
    (status,) = [p for p in listing["parameters"] if p["name"] == "status"]
    assert "out_for_delivery" in _resolved(document, status["schema"])["enum"]
    delivery = listing["responses"]["200"]["content"]["application/json"]["schema"]["items"]
    fields = _resolved(document, delivery)["properties"]
    assert {"queued", "delivered"} <= set(_resolved(document, fields["status"])["enum"])
    assert "delivered" in _resolved(document, fields["nextStatus"])["enum"]
    refund = _resolved(document, {"$ref": "#/components/schemas/RefundOut"})["properties"]
    assert set(_resolved(document, refund["status"])["enum"]) == {
        "requested",
        "completed",
        "cancelled",
    }

    short = await client.post(
        "/api/auth/signup",
        json={"email": "eleven@example.com", "password": "x" * 11, "name": "Eleven"},
    )
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "password"
    bad = await client.get("/api/deliveries", params={"status": "teleported"}, headers=staff)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"


async def test_a_misspelt_field_is_refused_rather_than_ignored(client: httpx.AsyncClient) -> None:
    """``coupon_code`` for ``couponCode`` placed the order at full price without a word."""
    customer = await new_customer(client)
    misspelt = order_body(coupon_code="PIZZA-AAAA-BBBB")
    refused = await client.post("/api/orders", json=misspelt, headers=auth(customer))
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert "unknown field `coupon_code`" in error["message"]
    assert (await client.get("/api/orders", headers=auth(customer))).json() == []
