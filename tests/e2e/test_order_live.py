"""The order journey in a real browser: sign up, fill the basket, pay, watch it live.

Each test acts like a person (links, labels, buttons) against the real shop processes.
The live order page must change by itself: the tests mark the window object and check the
mark survives, which a full page reload would wipe.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.support.api import DECLINED_CARD, GOOD_CARD, PASSWORD
from tests.support.processes import Shop

ORDER_URL = re.compile(r"/orders/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LIVE_TIMEOUT_MS = 15_000


def payment_latency_ms(shop: Shop) -> int:
    """1.5 s, but always well under the shop's partner timeout (a timeout is a failure)."""
    timeout = float(shop.env.get("PARTNER_TIMEOUT", os.environ.get("PARTNER_TIMEOUT", "3")))
    return min(1500, int(timeout * 1000 * 0.6))


@pytest.fixture
async def slow_payments(sandbox_url: str, shop: Shop) -> AsyncIterator[None]:
    """Make the payment provider slow, so "placed" is visible before "paid"."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as client:
        knobs = {"latencyMs": payment_latency_ms(shop)}
        response = await client.put("/sandbox/knobs/payment", json=knobs)
        assert response.status_code == 200, response.text
        try:
            yield
        finally:
            await client.put("/sandbox/knobs/payment", json={"latencyMs": 0})


async def sign_up(page: Page) -> None:
    await page.goto("/")
    await page.get_by_role("link", name="Sign up").click()
    await expect(page).to_have_url(re.compile(r"/signup"))
    await page.get_by_label("Name", exact=True).fill("Ada Browser")
    await page.get_by_label("Email", exact=True).fill(f"e2e-{uuid.uuid4().hex[:12]}@example.com")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("heading", name="Our pizzas")).to_be_visible()
    await expect(page.get_by_text("Ada Browser")).to_be_visible()


async def fill_basket(page: Page) -> list[str]:
    """Add the first two pizzas of the menu; the basket must update in place (HTMX)."""
    pizzas = page.locator("li.pizza")
    names = [(await pizzas.nth(i).get_by_role("heading").inner_text()).strip() for i in (0, 1)]
    assert names[0] != names[1]
    await page.evaluate("window.__marker = 'menu'")
    basket = page.locator("#basket")
    for count, name in enumerate(names, start=1):
        await page.get_by_role("button", name=f"Add {name}", exact=True).click()
        await expect(basket.locator(".basket-lines li")).to_have_count(count)
        await expect(basket.locator(".basket-lines li", has_text=name)).to_be_visible()
    await expect(page.locator("#basket-count")).to_have_text("2")
    assert await page.evaluate("window.__marker") == "menu", "adding to the basket reloaded"
    return names


async def check_out(page: Page, card: str) -> None:
    await page.locator("#basket").get_by_role("link", name="Checkout").click()
    await expect(page.get_by_role("heading", name="Checkout")).to_be_visible()
    await page.get_by_label("Delivery address").fill("Via Roma 1, Napoli")
    await page.get_by_label("Card number").fill(card)
    await page.get_by_role("button", name="Place order and pay").click()
    await expect(page).to_have_url(ORDER_URL, timeout=10_000)


async def test_order_goes_from_placed_to_paid_live(page: Page, slow_payments: None) -> None:
    await sign_up(page)
    names = await fill_basket(page)
    await check_out(page, GOOD_CARD)

    status = page.locator("#order-status")
    await expect(status).to_have_attribute("data-status", re.compile(r"^(placed|paid)$"))
    for name in names:
        await expect(page.locator("#order-live").get_by_text(name)).to_be_visible()
    await page.evaluate("window.__marker = 42")

    await expect(page.locator('#order-status[data-status="paid"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator('.timeline [data-status="paid"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator('.timeline [data-status="placed"]')).to_be_visible()
    assert await page.evaluate("window.__marker") == 42, "the order page reloaded"


async def test_declined_card_shows_payment_failed_and_the_reason(page: Page) -> None:
    await sign_up(page)
    await fill_basket(page)
    await check_out(page, DECLINED_CARD)
    await page.evaluate("window.__marker = 42")

    await expect(page.locator('#order-status[data-status="payment_failed"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.get_by_role("alert")).to_contain_text("Your card was declined.")
    await expect(page.locator('.timeline [data-status="payment_failed"]')).to_contain_text(
        "Your card was declined."
    )
    assert await page.evaluate("window.__marker") == 42, "the order page reloaded"


async def test_checkout_errors_are_shown_next_to_fields_and_input_is_kept(page: Page) -> None:
    await sign_up(page)
    names = await fill_basket(page)
    await page.locator("#basket").get_by_role("link", name="Checkout").click()
    await expect(page.get_by_role("heading", name="Checkout")).to_be_visible()

    await page.get_by_label("Delivery address").fill("   ")
    await page.get_by_label("Card number").fill("4242 42")
    await page.get_by_role("button", name="Place order and pay").click()

    await expect(page).to_have_url(re.compile(r"/checkout/?$"))
    address = page.locator(".field", has=page.get_by_label("Delivery address"))
    card = page.locator(".field", has=page.get_by_label("Card number"))
    await expect(address.get_by_role("alert")).to_have_text("Tell us where to deliver.")
    await expect(card.get_by_role("alert")).to_contain_text("card number")
    await expect(page.get_by_label("Delivery address")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Card number")).to_have_attribute("aria-invalid", "true")
    # The card number is never sent back to the browser (security): it is typed again.
    await expect(page.get_by_label("Card number")).to_have_value("")

    basket = page.locator("#basket")
    await expect(basket.locator(".basket-lines li")).to_have_count(2)
    for name in names:
        await expect(basket.locator(".basket-lines li", has_text=name)).to_be_visible()
    await expect(page.get_by_role("button", name="Place order and pay")).to_be_enabled()
