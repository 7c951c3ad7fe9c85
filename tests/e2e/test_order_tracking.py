"""The customer's tracker: basket plus and minus, a delivery window, a progress bar that follows the
kitchen live, and what a screen reader hears."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import httpx
from playwright.async_api import Page, expect

from tests.e2e.conftest import LIVE_TIMEOUT_MS, assert_marked, mark, sign_in
from tests.e2e.test_order_live import ORDER_URL, sign_up
from tests.support.api import GOOD_CARD, auth, new_customer, staff_headers
from tests.support.processes import Shop


async def test_basket_steppers_and_announcements(page: Page) -> None:
    await sign_up(page)
    await expect(page.get_by_role("link", name="Skip to content")).to_be_attached()
    first = page.locator("li.pizza").first
    name = (await first.get_by_role("heading").inner_text()).strip()
    await page.get_by_role("button", name=f"Add {name}", exact=True).click()
    line = page.locator("#basket .basket-lines li", has_text=name)
    await expect(line.locator(".qty")).to_have_text("1")
    await expect(page.locator("#basket-announcer")).to_contain_text("1 pizza")

    await line.get_by_role("button", name=f"One more {name}").click()
    await expect(line.locator(".qty")).to_have_text("2")
    await expect(page.locator("#basket-count")).to_have_text("2")
    await expect(page.locator("#basket-announcer")).to_contain_text("2 pizzas")

    await line.get_by_role("button", name=f"One {name} less").click()
    await expect(line.locator(".qty")).to_have_text("1")
    await line.get_by_role("button", name=f"One {name} less").click()
    await expect(page.locator("#basket .basket-lines li")).to_have_count(0)
    await expect(page.locator("#basket-announcer")).to_have_text("Your basket is empty.")


async def test_the_basket_is_one_tap_away_on_a_phone(page: Page) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await sign_up(page)
    jump = page.get_by_role("link", name="Go to your basket")
    await expect(jump).to_be_visible()
    await jump.click()
    await expect(page.get_by_role("heading", name="Your basket")).to_be_in_viewport()


async def test_live_order_page_shows_the_window_and_follows_the_kitchen(
    page: Page, api: httpx.AsyncClient, shop: Shop
) -> None:
    customer = await new_customer(api, name="Tia Tracker")
    await sign_in(page, customer["email"])
    first = page.locator("li.pizza").first
    name = (await first.get_by_role("heading").inner_text()).strip()
    await page.get_by_role("button", name=f"Add {name}", exact=True).click()
    await page.locator("#basket").get_by_role("link", name="Checkout").click()
    await page.get_by_label("Delivery address").fill("Via Roma 1, Napoli")
    await page.get_by_label("Card number").fill(GOOD_CARD)
    await page.get_by_role("button", name="Place order and pay").click()
    await expect(page).to_have_url(ORDER_URL)
    order_id = page.url.rsplit("/", 1)[1]

    eta = page.locator("#order-eta")
    await expect(eta).to_contain_text("Estimated delivery", timeout=LIVE_TIMEOUT_MS)
    await expect(eta.locator("time")).to_have_count(2)
    earliest = datetime.fromisoformat(str(await eta.get_attribute("data-earliest")))
    latest = datetime.fromisoformat(str(await eta.get_attribute("data-latest")))
    assert earliest < latest
    progress = page.get_by_role("list", name="Progress")
    await expect(progress.locator('[aria-current="step"]')).to_have_text("Queued")
    # the badge names the stage the order is in, the same word as the progress bar
    await expect(page.locator("#order-status")).to_have_text("Queued")
    await expect(page.locator("#order-status")).to_have_attribute("data-stage", "queued")
    await mark(page, "tracking")

    # The API's order view carries the same window, as ISO-8601 times.
    view = (await api.get(f"/api/orders/{order_id}", headers=auth(customer))).json()
    window = view["estimatedDelivery"]
    assert datetime.fromisoformat(window["earliest"]) == earliest
    assert datetime.fromisoformat(window["latest"]) == latest
    assert window["runningLate"] is False

    staff = await staff_headers(api, shop.env)
    # The window exists from payment on; the delivery may be projected a moment later.
    deadline = asyncio.get_running_loop().time() + LIVE_TIMEOUT_MS / 1000
    while view.get("delivery") is None:
        assert asyncio.get_running_loop().time() < deadline, "no delivery in the order view"
        await asyncio.sleep(0.1)
        view = (await api.get(f"/api/orders/{order_id}", headers=auth(customer))).json()
    moved = await api.post(f"/api/deliveries/{view['delivery']['id']}/advance", headers=staff)
    assert moved.status_code == 200, moved.text
    await expect(progress.locator('[aria-current="step"]')).to_have_text(
        "Preparing", timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator("#order-status")).to_have_text("Preparing")
    await expect(page.locator("#order-status")).to_have_attribute("data-stage", "preparing")
    await expect(progress.locator(".done")).to_have_text(["Queued"])
    await expect(page.locator("#order-announcer")).to_contain_text(re.compile("preparing", re.I))
    await expect(page.locator("#order-eta")).to_contain_text("Estimated delivery")
    await assert_marked(page, "tracking")
    # My orders says the same: the stage, not "Paid"
    await page.goto("/orders")
    badge = page.locator(f'tr:has(a[href="/orders/{order_id}"]) .status')
    await expect(badge).to_have_text("Preparing")
    await expect(badge).to_have_attribute("data-stage", "preparing")
