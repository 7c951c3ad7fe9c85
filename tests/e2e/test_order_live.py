"""The order journey in a real browser: sign up, fill the basket, pay, watch it live.

Each test acts like a person (links, labels, buttons) against the real shop processes.
The live order page must change by itself: the tests mark the window object and check the
mark survives, which a full page reload would wipe.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import pay_button, words
from tests.support.api import DECLINED_CARD, GOOD_CARD, PASSWORD
from tests.support.processes import Shop

Words = Callable[..., str]


def english(text: str, **params: str) -> str:
    return words("en", text, **params)


BOTH_LANGUAGES = pytest.mark.parametrize("lang", ["en", "ko"])
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


async def sign_up(page: Page, t: Words | None = None) -> None:
    t = t or english
    await page.goto("/")
    await page.get_by_role("link", name=t("Sign up")).click()
    await expect(page).to_have_url(re.compile(r"/signup"))
    await page.get_by_label(t("Name"), exact=True).fill("Ada Browser")
    await page.get_by_label(t("Email"), exact=True).fill(f"e2e-{uuid.uuid4().hex[:12]}@example.com")
    await page.get_by_label(t("Password"), exact=True).fill(PASSWORD)
    await page.get_by_role("button", name=t("Sign up")).click()
    await expect(page.get_by_role("heading", name=t("Our pizzas"))).to_be_visible()
    await expect(page.get_by_text("Ada Browser")).to_be_visible()


async def fill_basket(page: Page, t: Words | None = None) -> list[str]:
    """Add the first two pizzas of the menu; the basket must update in place (HTMX)."""
    t = t or english
    pizzas = page.locator("li.pizza")
    names = [(await pizzas.nth(i).get_by_role("heading").inner_text()).strip() for i in (0, 1)]
    assert names[0] != names[1]
    await page.evaluate("window.__marker = 'menu'")
    basket = page.locator("#basket")
    for count, name in enumerate(names, start=1):
        await page.get_by_role("button", name=t("Add %(pizza)s", pizza=name), exact=True).click()
        await expect(basket.locator(".basket-lines li")).to_have_count(count)
        await expect(basket.locator(".basket-lines li", has_text=name)).to_be_visible()
    await expect(page.locator("#basket-count")).to_have_text("2")
    assert await page.evaluate("window.__marker") == "menu", "adding to the basket reloaded"
    return names


async def check_out(page: Page, lang: str, card: str) -> None:
    def t(text: str) -> str:
        return words(lang, text)

    await page.locator("#basket").get_by_role("link", name=t("Checkout")).click()
    await expect(page.get_by_role("heading", name=t("Checkout"))).to_be_visible()
    await page.get_by_label(t("Delivery address")).fill("Via Roma 1, Napoli")
    await page.get_by_label(t("Card number")).fill(card)
    await pay_button(page, lang).click()
    await expect(page).to_have_url(ORDER_URL, timeout=10_000)


@BOTH_LANGUAGES
async def test_order_goes_from_placed_to_paid_live(
    page: Page, slow_payments: None, t: Words, lang: str
) -> None:
    await sign_up(page, t)
    names = await fill_basket(page, t)
    if lang == "ko":  # what a Korean customer reads: Korean words, won, no decimals
        assert names[:2] == ["마르게리타", "마리나라"]
        await expect(page.locator("html")).to_have_attribute("lang", "ko")
        await expect(page.locator("#basket-total")).to_have_text("₩29,800")
    await check_out(page, lang, GOOD_CARD)

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
    # paid, the order waits in the kitchen's queue: the badge says the stage, not "Paid"
    await expect(page.locator("#order-status")).to_have_text(t("Queued"))
    await expect(page.locator('.timeline [data-status="placed"]')).to_contain_text(
        t("Order placed")
    )
    if lang == "ko":
        await expect(page.locator("#order-status")).to_have_text("접수 대기")
        await expect(page.locator('.timeline [data-status="paid"]')).to_contain_text(
            "₩29,800 결제 완료"
        )
    assert await page.evaluate("window.__marker") == 42, "the order page reloaded"


@BOTH_LANGUAGES
async def test_declined_card_shows_payment_failed_and_the_reason(
    page: Page, t: Words, lang: str
) -> None:
    await sign_up(page, t)
    await fill_basket(page, t)
    await check_out(page, lang, DECLINED_CARD)
    await page.evaluate("window.__marker = 42")

    await expect(page.locator('#order-status[data-status="payment_failed"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.get_by_role("alert")).to_contain_text(t("Your card was declined."))
    await expect(page.locator('.timeline [data-status="payment_failed"]')).to_contain_text(
        t("Your card was declined.")
    )
    assert await page.evaluate("window.__marker") == 42, "the order page reloaded"


@BOTH_LANGUAGES
async def test_checkout_errors_are_shown_next_to_fields_and_input_is_kept(
    page: Page, t: Words, lang: str
) -> None:
    await sign_up(page, t)
    names = await fill_basket(page, t)
    await page.locator("#basket").get_by_role("link", name=t("Checkout")).click()
    await expect(page.get_by_role("heading", name=t("Checkout"))).to_be_visible()

    await page.get_by_label(t("Delivery address")).fill("   ")
    await page.get_by_label(t("Card number")).fill("4242 42")
    await pay_button(page, lang).click()

    await expect(page).to_have_url(re.compile(r"/checkout/?$"))
    address = page.locator(".field", has=page.get_by_label(t("Delivery address")))
    card = page.locator(".field", has=page.get_by_label(t("Card number")))
    await expect(address.get_by_role("alert")).to_have_text(t("Tell us where to deliver."))
    await expect(card.get_by_role("alert")).to_have_text(
        t("Enter a card number of 12 to 19 digits.")
    )
    await expect(page.get_by_label(t("Delivery address"))).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label(t("Card number"))).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label(t("Delivery address"))).to_be_focused()  # the first wrong
    # The card number is never sent back to the browser (security): it is typed again.
    await expect(page.get_by_label(t("Card number"))).to_have_value("")

    basket = page.locator("#basket")
    await expect(basket.locator(".basket-lines li")).to_have_count(2)
    for name in names:
        await expect(basket.locator(".basket-lines li", has_text=name)).to_be_visible()
    await expect(pay_button(page, lang)).to_be_enabled()
