"""Delivery, courier partner, coupons and cancel, end to end through the real processes."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import httpx

from app.platform.signing import sign
from tests.support.api import (
    auth,
    bearer,
    browser_session,
    create_user,
    new_customer,
    order_body,
    paid_order,
    wait_for,
)
from tests.support.processes import Shop


async def _advance(
    client: httpx.AsyncClient, staff: dict[str, str], delivery_id: str
) -> dict[str, Any]:
    response = await client.post(f"/api/deliveries/{delivery_id}/advance", headers=staff)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_from_paid_to_delivered_with_a_coupon(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    customer = await new_customer(client)
    order = await paid_order(client, customer)
    delivery_id = order["delivery"]["id"]
    assert order["status"] == "paid" and order["delivery"]["status"] == "queued"

    assigned = await wait_for(
        client, customer, order["id"], lambda v: v["delivery"]["rider"], "a rider"
    )
    assert assigned["delivery"]["courierStatus"] == "assigned"

    moves = [(await _advance(client, staff, delivery_id))["status"] for _ in range(3)]
    assert moves == ["preparing", "baking", "ready"]
    # The partner collects once told the food is ready, then delivers (its webhooks).
    delivered = await wait_for(
        client, customer, order["id"], lambda v: v["status"] == "fulfilled", "delivered"
    )
    stages = [step["status"] for step in delivered["timeline"]]
    assert stages == [
        "placed",
        "paid",
        "queued",
        "preparing",
        "baking",
        "ready",
        "out_for_delivery",
        "delivered",
    ]
    with_coupon = await wait_for(client, customer, order["id"], lambda v: v["coupon"], "a coupon")
    coupon = with_coupon["coupon"]
    assert coupon["status"] == "issued" and coupon["discount"] > 0
    mine = (await client.get("/api/coupons", headers=auth(customer))).json()
    assert [(c["code"], c["orderId"]) for c in mine] == [(coupon["code"], order["id"])]

    nothing_left = await client.post(f"/api/deliveries/{delivery_id}/advance", headers=staff)
    assert nothing_left.status_code == 409 and "no next stage" in nothing_left.json()["detail"]

    # The coupon takes money off the next order, once.
    body = order_body(couponCode=coupon["code"].lower())
    keyed = {**auth(customer), "Idempotency-Key": uuid.uuid4().hex}
    second = await client.post("/api/orders", json=body, headers=keyed)
    assert second.status_code == 201, second.text
    assert second.json()["discountAmount"] == coupon["discount"]
    # its retry is answered with that order, though its coupon is used now
    retried = await client.post("/api/orders", json=body, headers=keyed)
    assert retried.status_code < 300 and retried.json()["id"] == second.json()["id"]
    again = await client.post(
        "/api/orders", json=order_body(couponCode=coupon["code"]), headers=auth(customer)
    )
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "couponCode"
    # with a mistyped card too, both are named at once (the card is not typed twice)
    both = await client.post(
        "/api/orders",
        json=order_body(card="4242424242424241", couponCode=coupon["code"]),
        headers=auth(customer),
    )
    assert both.status_code == 422
    assert {e["field"] for e in both.json()["errors"]} == {"cardNumber", "couponCode"}
    stranger = await new_customer(client)
    theirs = await client.post(
        "/api/orders", json=order_body(couponCode=coupon["code"]), headers=auth(stranger)
    )
    assert theirs.status_code == 422


async def test_staff_api_needs_the_staff_role(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    customer = await new_customer(client)
    assert (await client.get("/api/deliveries", headers=auth(customer))).status_code == 403
    assert (await client.get("/api/admin/breakers", headers=auth(customer))).status_code == 403
    assert (await client.get("/api/deliveries")).status_code == 401
    listed = await client.get("/api/deliveries", params={"status": "queued"}, headers=staff)
    assert listed.status_code == 200 and all(d["status"] == "queued" for d in listed.json())
    bad = await client.get("/api/deliveries", params={"status": "teleported"}, headers=staff)
    assert bad.status_code == 422
    breakers = (await client.get("/api/admin/breakers", headers=staff)).json()
    assert {b["name"] for b in breakers} == {"payment", "courier"}


async def test_the_courier_webhook_rejects_a_bad_signature(client: httpx.AsyncClient) -> None:
    body = (
        b'{"eventId":"ev_1","type":"delivered","pickupId":"pk_x","reference":"r",'
        b'"rider":null,"occurredAt":"2026-01-01T00:00:00+00:00"}'
    )
    forged = await client.post(
        "/webhooks/courier",
        content=body,
        headers={
            "content-type": "application/json",
            "X-Courier-Signature": sign("wrong-secret", body),
        },
    )
    assert forged.status_code == 401
    unsigned = await client.post("/webhooks/courier", content=body)
    assert unsigned.status_code == 401
    good = await client.post(
        "/webhooks/courier",
        content=body,
        headers={"X-Courier-Signature": sign(os.environ["COURIER_WEBHOOK_SECRET"], body)},
    )
    # A validly signed event about a pickup we have not recorded yet (the partner answered
    # the booking, and its webhook overtook our commit): "send it again", not "done".
    assert good.status_code == 503, good.text
    assert good.headers["Retry-After"] == "1"


async def test_cancel_voids_the_payment_once_and_withdraws_the_rider(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    customer = await new_customer(client)
    order = await paid_order(client, customer)
    cancelled = await client.post(f"/api/orders/{order['id']}/cancel", headers=auth(customer))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["delivery"]["status"] == "cancelled"

    voided = await wait_for(
        client, customer, order["id"], lambda v: v["payment"]["status"] == "voided", "a void"
    )
    assert [step["status"] for step in voided["timeline"]][-2:] == ["cancelled", "payment_voided"]
    payments = (await sandbox.get("/sandbox/payments/charges")).json()
    [charge] = [
        c for c in payments if c["amount"] == order["totalAmount"] and "void" in c["operations"]
    ][-1:]
    assert charge["operations"] == ["capture", "void"]
    pickups = (
        await sandbox.get("/sandbox/courier/pickups", params={"reference": order["delivery"]["id"]})
    ).json()
    await_withdrawn = 0
    while pickups and "cancel" not in pickups[0]["operations"] and await_withdrawn < 50:
        await asyncio.sleep(0.1)
        await_withdrawn += 1
        pickups = (
            await sandbox.get(
                "/sandbox/courier/pickups", params={"reference": order["delivery"]["id"]}
            )
        ).json()
    assert not pickups or pickups[0]["operations"].count("cancel") == 1

    twice = await client.post(f"/api/orders/{order['id']}/cancel", headers=auth(customer))
    assert twice.status_code == 409


async def test_cancel_is_refused_once_the_kitchen_started(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    customer = await new_customer(client)
    order = await paid_order(client, customer)
    await _advance(client, staff, order["delivery"]["id"])
    refused = await client.post(f"/api/orders/{order['id']}/cancel", headers=auth(customer))
    assert refused.status_code == 409
    assert "kitchen has already started" in refused.json()["detail"]
    other = await new_customer(client)
    assert (
        await client.post(f"/api/orders/{order['id']}/cancel", headers=auth(other))
    ).status_code == 404
    view = (await client.get(f"/api/orders/{order['id']}", headers=auth(customer))).json()
    assert view["status"] == "paid"


async def test_staff_moving_an_order_the_customer_cancelled_are_told_who_did(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    """Not "a second click, or a colleague": the customer cancelled it meanwhile."""
    staff = await bearer(client, await create_user(shop.env, "staff"))
    customer = await new_customer(client)
    order = await paid_order(client, customer)
    cancelled = await client.post(f"/api/orders/{order['id']}/cancel", headers=auth(customer))
    assert cancelled.status_code == 200, cancelled.text

    refused = await client.post(
        f"/api/deliveries/{order['delivery']['id']}/advance",
        json={"from": "queued"},
        headers=staff,
    )

    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == "The customer cancelled this order; nothing was changed."


async def test_a_double_click_moves_a_delivery_one_stage_and_tells_the_second_click(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    """Both clicks say which stage the staff member saw; the second finds the delivery
    already moved and answers 409 naming where it is, instead of moving it again (the
    chaos suite saw queued → baking from one double click). Undo still takes back one."""
    staff_email = await create_user(shop.env, "staff")
    staff = await bearer(client, staff_email)
    order = await paid_order(client, await new_customer(client))
    delivery_id = order["delivery"]["id"]
    url = f"/api/deliveries/{delivery_id}/advance"

    answers = await asyncio.gather(
        *(client.post(url, json={"from": "queued"}, headers=staff) for _ in range(2))
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    [refused] = [a.json() for a in answers if a.status_code == 409]
    assert refused["code"] == "stage_moved" and "already moved to" in refused["detail"]
    now = (await client.get(f"/api/deliveries/{delivery_id}", headers=staff)).json()
    assert now["status"] == "preparing"
    wrong = await client.post(url, json={"from": "launched"}, headers=staff)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "from"

    # The board's card form, clicked twice (htmx): one move, and the board says why not.
    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=20) as browser:
        csrf = await browser_session(browser, staff_email)
        form = {"from": "preparing", "_csrf_token": csrf}
        clicks = await asyncio.gather(
            *(
                browser.post(
                    f"/staff/deliveries/{delivery_id}/advance",
                    data=form,
                    headers={"HX-Request": "true"},
                )
                for _ in range(2)
            )
        )
        assert [c.status_code for c in clicks] == [200, 200]
        notices = [c.text for c in clicks if "move-refused" in c.text]
        assert len(notices) == 1 and "already moved to" in notices[0]
        now = (await client.get(f"/api/deliveries/{delivery_id}", headers=staff)).json()
        assert now["status"] == "baking"
        undo = await browser.post(
            f"/staff/deliveries/{delivery_id}/undo",
            data={"_csrf_token": csrf},
            headers={"HX-Request": "true"},
        )
        assert undo.status_code == 200
    now = (await client.get(f"/api/deliveries/{delivery_id}", headers=staff)).json()
    assert now["status"] == "preparing"
