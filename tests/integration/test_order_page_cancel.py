"""The order page offers Cancel while the kitchen may still step back, greyed out with
why while it works on the pizzas (staff may undo a move), and not at all once the order
is ready (customer walk: a disabled "Cancel order" next to a rider on their way)."""

from __future__ import annotations

import httpx

from tests.support.api import browser_session, new_customer, paid_order, staff_headers
from tests.support.processes import Shop

CANCEL = 'id="cancel-order"'


async def test_cancel_is_offered_while_the_kitchen_may_still_step_back(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    customer = await new_customer(client, name="Nell Nocancel")
    order = await paid_order(client, customer)
    staff = await staff_headers(client, shop.env)
    delivery = order["delivery"]["id"]
    seen: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=shop.url) as browser:
        await browser_session(browser, customer["email"])
        for stage in ("queued", "preparing", "baking", "ready"):
            seen[stage] = (await browser.get(f"/orders/{order['id']}")).text
            assert f'data-stage="{stage}"' in seen[stage]
            if stage != "ready":
                moved = await client.post(f"/api/deliveries/{delivery}/advance", headers=staff)
                assert moved.status_code == 200, moved.text
    assert CANCEL in seen["queued"] and 'id="cancel-reason"' not in seen["queued"]
    for stage in ("preparing", "baking"):
        assert CANCEL in seen[stage] and 'id="cancel-reason"' in seen[stage], stage
    assert CANCEL not in seen["ready"]
