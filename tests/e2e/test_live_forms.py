"""Forms that arrive through the live stream must work: a person clicks what they see.

The order and refund pages are re-rendered by SSE right after they open (and on every
change). The fragment marks itself ``data-rendered="live"``; these tests wait for that
mark, so the button they click is the one the stream delivered, then click it.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import LIVE_TIMEOUT_MS, sign_in
from tests.support.api import (
    delivered_order,
    file_refund,
    new_customer,
    paid_order,
    staff_headers,
    wait_for,
)
from tests.support.processes import Shop

Words = Callable[..., str]
BOTH_LANGUAGES = pytest.mark.parametrize("lang", ["en", "ko"])


@BOTH_LANGUAGES
async def test_cancel_order_after_the_live_stream_re_rendered_the_page(
    page: Page, api: httpx.AsyncClient, t: Words, lang: str
) -> None:
    customer = await new_customer(api, name="Cy Cancel")
    order = await paid_order(api, customer)
    # a rider is booked with the payment: the cancelled order must stop naming them
    await wait_for(api, customer, order["id"], lambda v: v["delivery"]["rider"], "a rider")
    await sign_in(page, customer["email"], lang=lang)

    await page.goto(f"/orders/{order['id']}")
    await expect(page.locator('#order-status[data-rendered="live"]')).to_have_count(
        1, timeout=LIVE_TIMEOUT_MS
    )
    await page.get_by_role("button", name=t("Cancel order")).click()

    await expect(page.get_by_text("CSRF")).to_have_count(0)
    await expect(page.locator("#order-status")).to_have_attribute(
        "data-status", "cancelled", timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator("#order-status")).to_have_text(t("Cancelled"))
    await expect(page.locator("#rider-status")).to_have_count(0)
    await expect(page.locator('[data-payment-status="voided"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator("#payment-voided")).to_have_text(t("No money was taken."))
    # the timeline's "Paid" is followed by the void, in the visitor's language
    await expect(page.locator('.timeline [data-status="payment_voided"]')).to_contain_text(
        t("Payment voided")
    )


@BOTH_LANGUAGES
async def test_withdraw_refund_after_the_live_stream_re_rendered_the_page(
    page: Page, api: httpx.AsyncClient, shop: Shop, t: Words, lang: str
) -> None:
    customer = await new_customer(api, name="Wil Withdraw")
    order = await delivered_order(api, customer, await staff_headers(api, shop.env))
    filed = await file_refund(api, customer, order["id"], "cold_or_late", "Cold.")
    assert filed.status_code == 201, filed.text
    await sign_in(page, customer["email"], lang=lang)

    await page.goto(f"/refunds/{filed.json()['id']}")
    await expect(page.locator('#refund-status[data-rendered="live"]')).to_have_count(
        1, timeout=LIVE_TIMEOUT_MS
    )
    await page.get_by_role("button", name=t("Withdraw refund")).click()

    await expect(page.get_by_text("CSRF")).to_have_count(0)
    await expect(page.locator("#refund-status")).to_have_attribute(
        "data-status", "cancelled", timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator("#refund-cancelled")).to_have_text(
        t("You cancelled this refund. No money moved.")
    )


async def test_a_refused_cancel_goes_when_staff_undo_the_move_that_refused_it(
    page: Page, api: httpx.AsyncClient, shop: Shop
) -> None:
    """A tab still showing Cancel after the kitchen started sends it and is told why not;
    when staff then undo the move, the live page offers Cancel again, and the notice that
    said it could no longer be cancelled goes with the state it spoke of."""
    customer = await new_customer(api, name="Una Undo")
    order = await paid_order(api, customer)
    staff = await staff_headers(api, shop.env)
    await sign_in(page, customer["email"])
    await page.goto(f"/orders/{order['id']}")
    status = page.locator("#order-status")
    await expect(status).to_have_attribute("data-rendered", "live", timeout=LIVE_TIMEOUT_MS)
    delivery = order["delivery"]["id"]
    started = await api.post(f"/api/deliveries/{delivery}/advance", headers=staff)
    assert started.status_code == 200, started.text
    cancel = page.get_by_role("button", name="Cancel order")
    await expect(cancel).to_be_disabled(timeout=LIVE_TIMEOUT_MS)
    await cancel.evaluate("button => { button.disabled = false; }")  # a tab a step behind
    await cancel.click()

    notice = page.locator("#order-notice")
    await expect(notice).to_contain_text("can no longer be cancelled")
    await expect(status).to_have_attribute("data-rendered", "live", timeout=LIVE_TIMEOUT_MS)
    await expect(notice).to_be_visible()  # the stream's first render is the same order
    undone = await api.post(f"/api/deliveries/{delivery}/undo", headers=staff)
    assert undone.status_code == 200, undone.text
    await expect(cancel).to_be_enabled(timeout=LIVE_TIMEOUT_MS)
    await expect(notice).to_have_count(0)


async def set_hidden(page: Page, hidden: bool) -> None:
    """What the browser does when a tab goes behind another and comes back (Playwright
    keeps every page it drives visible)."""
    await page.evaluate(
        """hidden => {
            const state = hidden ? "hidden" : "visible";
            const own = (name, value) =>
                Object.defineProperty(document, name, {configurable: true, get: () => value});
            own("visibilityState", state);
            own("hidden", hidden);
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


async def test_hidden_live_tabs_leave_the_browser_connections_for_the_rest_of_the_shop(
    page: Page, api: httpx.AsyncClient, shop: Shop
) -> None:
    """A browser opens six connections to a site over HTTP/1.1, and each live page holds
    one: with six order tabs open, a seventh page of the shop never loaded. A hidden tab
    lets its stream go, and catches up when it is shown again."""
    customer = await new_customer(api, name="Tess Tabs")
    order = await paid_order(api, customer)
    staff = await staff_headers(api, shop.env)
    await sign_in(page, customer["email"])
    tabs = [page, *[await page.context.new_page() for _ in range(5)]]
    for tab in tabs:
        await tab.goto(f"/orders/{order['id']}")
        await expect(tab.locator('#order-status[data-rendered="live"]')).to_have_count(
            1, timeout=LIVE_TIMEOUT_MS
        )
        await set_hidden(tab, True)
        await expect(tab.locator("#order-live")).to_have_attribute("data-live", "paused")

    seventh = await page.context.new_page()
    await seventh.goto("/orders", timeout=LIVE_TIMEOUT_MS)
    await expect(seventh.get_by_role("heading", name="My orders")).to_be_visible()

    status = tabs[0].locator("#order-status")
    seen = await status.get_attribute("data-version")
    started = await api.post(f"/api/deliveries/{order['delivery']['id']}/advance", headers=staff)
    assert started.status_code == 200, started.text
    await set_hidden(tabs[0], False)
    await expect(status).not_to_have_attribute("data-version", seen or "", timeout=LIVE_TIMEOUT_MS)
    await expect(tabs[0].get_by_role("button", name="Cancel order")).to_be_disabled()
