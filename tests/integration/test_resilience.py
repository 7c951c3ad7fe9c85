"""Partner outages and a stopped coupon worker, with the real processes (NFR2.1 to 2.4)."""

from __future__ import annotations

import asyncio

import httpx

from app.coupon import tasks as coupon_tasks
from tests.support.api import (
    auth,
    browser_session,
    delivered_order,
    new_customer,
    order_body,
    paid_order,
    staff_headers,
    wait_for,
)
from tests.support.processes import Shop
from tests.support.quiet import wait_for_job_taken, wait_for_queued_job


async def test_orders_go_on_while_the_coupon_worker_is_down_and_coupons_catch_up(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    staff = await staff_headers(client, shop.env)
    customer = await new_customer(client)
    shop.stop_worker("coupon")
    try:
        order = await paid_order(client, customer)
        for _ in range(3):
            moved = await client.post(
                f"/api/deliveries/{order['delivery']['id']}/advance", headers=staff
            )
            assert moved.status_code == 200
        delivered = await wait_for(
            client, customer, order["id"], lambda v: v["status"] == "fulfilled", "delivered"
        )
        another = await client.post("/api/orders", json=order_body(), headers=auth(customer))
        assert another.status_code == 201, "customers still order without the coupon worker"
        job = await wait_for_queued_job(shop.env["REDIS_URL"], "coupon", coupon_tasks.ISSUE)
        assert delivered["coupon"] is None
        assert (await client.get("/api/coupons", headers=auth(customer))).json() == []
    finally:
        shop.start_worker("coupon")
    await wait_for_job_taken(shop.env["REDIS_URL"], "coupon", job)
    caught_up = await wait_for(
        client, customer, order["id"], lambda v: v["coupon"] is not None, "its coupon", 20
    )
    assert caught_up["coupon"]["status"] == "issued"
    assert len((await client.get("/api/coupons", headers=auth(customer))).json()) == 1


async def test_a_courier_outage_refuses_orders_fast_then_recovers(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    customer = await new_customer(client)
    await sandbox.put("/sandbox/knobs/courier", json={"down": True})
    waiting: list[str] = []
    try:
        refused = None
        async with asyncio.timeout(25):
            while refused is None:
                response = await client.post(
                    "/api/orders", json=order_body(), headers=auth(customer)
                )
                if response.status_code == 503:
                    refused = response
                else:
                    assert response.status_code == 201, response.text
                    waiting.append(response.json()["id"])
                    await asyncio.sleep(0.3)
        assert int(refused.headers["Retry-After"]) >= 1
        assert "courier" in refused.json()["detail"]
        for order_id in waiting:
            view = (await client.get(f"/api/orders/{order_id}", headers=auth(customer))).json()
            assert view["delivery"] is None or view["delivery"]["courierStatus"] == "unassigned"
    finally:
        await sandbox.put("/sandbox/knobs/courier", json={"down": False})

    accepted = None
    async with asyncio.timeout(20):
        while accepted is None:
            response = await client.post("/api/orders", json=order_body(), headers=auth(customer))
            if response.status_code == 201:
                accepted = response
            else:
                assert response.status_code == 503
                await asyncio.sleep(0.5)
    for order_id in waiting:
        await wait_for(
            client,
            customer,
            order_id,
            lambda v: v["delivery"] and v["delivery"]["courierStatus"] in ("requested", "assigned"),
            "a rider request after the outage",
            30,
        )


async def _trip_courier_breaker(client: httpx.AsyncClient, customer: dict[str, str]) -> None:
    """Orders need riders; with the partner down their rider requests fail until the
    breaker opens and the shop starts refusing new orders."""
    async with asyncio.timeout(25):
        while True:
            response = await client.post("/api/orders", json=order_body(), headers=auth(customer))
            if response.status_code == 503:
                return
            await asyncio.sleep(0.3)


async def test_refunds_and_checkout_are_refused_with_input_kept_while_the_breaker_is_open(
    client: httpx.AsyncClient, shop: Shop, sandbox: httpx.AsyncClient
) -> None:
    staff = await staff_headers(client, shop.env)
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff, with_coupon=False)
    await sandbox.put("/sandbox/knobs/courier", json={"down": True})
    try:
        await _trip_courier_breaker(client, customer)
        refused = await client.post(
            "/api/refunds",
            json={"orderId": order["id"], "reasonCode": "quality", "reason": "Burnt"},
            headers=auth(customer),
        )
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1

        async with httpx.AsyncClient(base_url=shop.url, timeout=20) as browser:
            csrf = await browser_session(browser, customer["email"])
            form = await browser.post(
                f"/orders/{order['id']}/refund",
                data={"reason_code": "quality", "reason": "Burnt crust", "_csrf_token": csrf},
            )
            assert form.status_code == 503 and int(form.headers["Retry-After"]) >= 1
            assert "try again" in form.text and "Burnt crust" in form.text
            assert 'value="quality" checked' in form.text

            await browser.post("/basket/add", data={"pizza_id": "4", "_csrf_token": csrf})
            checkout = await browser.post(
                "/checkout",
                data={
                    "address": "Via Toledo 5",
                    "card_number": "4242 4242 4242 4242",
                    "idempotency_key": "k-503",
                    "_csrf_token": csrf,
                },
            )
            assert checkout.status_code == 503
            assert "We can&#39;t take orders for about" in checkout.text
            assert "Via Toledo 5" in checkout.text and "Quattro Formaggi" in checkout.text
        view = (await client.get(f"/api/orders/{order['id']}", headers=auth(customer))).json()
        assert view["refund"] is None and view["delivery"]["status"] == "delivered"
    finally:
        await sandbox.put("/sandbox/knobs/courier", json={"down": False})
    async with asyncio.timeout(20):
        while True:
            retry = await client.post(
                "/api/refunds",
                json={"orderId": order["id"], "reasonCode": "quality", "reason": "Burnt"},
                headers=auth(customer),
            )
            if retry.status_code == 201:
                break
            assert retry.status_code == 503
            await asyncio.sleep(0.5)


async def test_a_payment_provider_away_at_checkout_opens_its_breaker(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    """With the provider away, checkout's card check fails before any order or charge
    exists: those calls alone must open the payment breaker, so the board, the alerts
    and every web process know (they went around it, and the breaker stayed closed)."""
    customer = await new_customer(client)

    async def payment_state() -> str:
        breakers = (await client.get("/api/admin/breakers", headers=staff)).json()
        return str(next(b["state"] for b in breakers if b["name"] == "payment"))

    await sandbox.put("/sandbox/knobs/payment", json={"down": True})
    try:
        async with asyncio.timeout(20):
            while await payment_state() != "open":
                response = await client.post(
                    "/api/orders", json=order_body(), headers=auth(customer)
                )
                assert response.status_code == 503, response.text
                assert int(response.headers["Retry-After"]) >= 1
    finally:
        await sandbox.put("/sandbox/knobs/payment", json={"down": False})
    async with asyncio.timeout(20):
        while True:  # the breaker lets a trial through once its open period is over
            response = await client.post("/api/orders", json=order_body(), headers=auth(customer))
            if response.status_code == 201:
                break
            assert response.status_code == 503, response.text
            await asyncio.sleep(0.5)
