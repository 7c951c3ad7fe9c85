"""What the order page says of the coupon the order earned while a refund of it is only
asked for (customer walk: "withdrawn with its refund" before any refund had happened;
the coupon comes back if the customer withdraws the request)."""

from __future__ import annotations

import httpx

from tests.support.api import (
    auth,
    browser_session,
    delivered_order,
    file_refund,
    new_customer,
    staff_headers,
    wait_for,
)
from tests.support.processes import Shop

ON_HOLD = "is on hold while your refund is looked at."


async def test_an_earned_coupon_is_on_hold_while_its_refund_is_asked_for(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    customer = await new_customer(client, name="Hal Hold")
    order = await delivered_order(client, customer, await staff_headers(client, shop.env))
    filed = await file_refund(client, customer, order["id"], "cold_or_late", "Cold.")
    assert filed.status_code == 201, filed.text
    await wait_for(
        client, customer, order["id"], lambda v: v["coupon"]["status"] == "revoked", "held"
    )
    async with httpx.AsyncClient(base_url=shop.url) as browser:
        await browser_session(browser, customer["email"])
        asked = (await browser.get(f"/orders/{order['id']}")).text
        withdrawn = await client.post(
            f"/api/refunds/{filed.json()['id']}/cancel", headers=auth(customer)
        )
        assert withdrawn.status_code == 200, withdrawn.text
        await wait_for(
            client, customer, order["id"], lambda v: v["coupon"]["status"] == "issued", "back"
        )
        back = (await browser.get(f"/orders/{order['id']}")).text
    assert ON_HOLD in asked and "withdrawn with its refund" not in asked
    assert ON_HOLD not in back and "takes" in back
