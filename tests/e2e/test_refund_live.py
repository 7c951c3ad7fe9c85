"""A refund in real browsers: the customer files it, staff find it, staff cancel the return.

The customer's refund page is live over SSE: the cancellation must appear without a
reload, which the window mark proves.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.e2e.conftest import (
    BROWSER_LOCALES,
    LIVE_TIMEOUT_MS,
    assert_marked,
    create_staff,
    mark,
    sign_in,
    words,
)
from tests.support.api import delivered_order, new_customer, staff_headers
from tests.support.processes import Shop

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
REFUND_URL = re.compile(rf"/refunds/({UUID})$")
Words = Callable[..., str]


def english(text: str, **params: str) -> str:
    return words("en", text, **params)


async def file_missing_item_refund(page: Page, order_id: str, text: str, t: Words = english) -> str:
    """From the order page, through the refund form; returns the new refund's id."""
    await page.goto(f"/orders/{order_id}")
    await expect(page.locator("#order-status")).to_have_attribute("data-status", "fulfilled")
    await page.locator("#request-refund").click()
    await expect(page).to_have_url(re.compile(rf"/orders/{order_id}/refund$"))
    await expect(page.get_by_role("heading", name=t("Request a refund"))).to_be_visible()
    await page.get_by_label(t("Missing item"), exact=True).check()
    await page.locator("#reason").fill(text)
    await page.get_by_role("button", name=t("Request refund")).click()
    await expect(page).to_have_url(REFUND_URL)
    found = REFUND_URL.search(page.url)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_refund_is_filed_found_by_staff_and_cancelled_live(
    page: Page,
    new_context: Callable[[], Awaitable[BrowserContext]],
    api: httpx.AsyncClient,
    shop: Shop,
    t: Words,
    lang: str,
) -> None:
    customer = await new_customer(api, name="Lin Refund")
    order = await delivered_order(api, customer, await staff_headers(api, shop.env))
    word = f"basil{uuid.uuid4().hex[:8]}"
    text = f"The garlic bread was not in the bag ({word})."

    await sign_in(page, customer["email"], lang=lang)
    refund_id = await file_missing_item_refund(page, order["id"], text, t)
    await expect(page.locator("#refund-status")).to_have_attribute("data-status", "requested")
    await expect(page.locator("#refund-reason")).to_have_text(t("Missing item"))
    await expect(page.locator("#refund-reason")).to_have_attribute(
        "data-reason-code", "missing_item"
    )
    await expect(page.locator("#refund-text")).to_have_text(text)
    await mark(page, "refund")

    staff = await (await new_context()).new_page()
    await sign_in(staff, await create_staff(shop), lang=lang)
    await staff.goto("/staff/refunds")
    await staff.locator("#reason").select_option(label=t("Missing item"))
    await staff.locator("#q").fill(word)
    await staff.get_by_role("button", name=t("Look up")).click()
    await expect(staff).to_have_url(re.compile(r"/staff/refunds/?\?.*reason=missing_item"))
    rows = staff.locator("#refund-table tbody tr[data-refund-id]")
    await expect(rows).to_have_count(1)
    row = staff.locator(f'#refund-table tr[data-refund-id="{refund_id}"]')
    await expect(row).to_contain_text(t("Missing item"))
    await expect(row).to_contain_text(word)
    await expect(row.locator("[data-status]")).to_have_attribute("data-status", "requested")
    chart = staff.locator('#reason-chart .chart-row[data-reason="missing_item"]')
    await expect(chart).to_be_visible()
    count = await chart.get_attribute("data-count")
    assert count is not None and int(count) >= 1, count
    await expect(staff.locator("#reason-chart .chart-row")).to_have_count(1)
    await expect(staff.locator("#total-requested")).not_to_have_attribute("data-amount", "0")
    await expect(staff.locator("#total-refunded")).to_have_attribute("data-amount", "0")

    # The CSV export carries the same filter: one refund, with the customer's words.
    href = await staff.get_by_role("link", name=t("Export CSV")).get_attribute("href")
    assert href is not None and "reason=missing_item" in href, href
    # what the browser sends when the link is clicked: its language comes along
    exported = await staff.request.get(href, headers={"Accept-Language": BROWSER_LOCALES[lang]})
    assert exported.ok, exported.status
    lines = [line for line in (await exported.text()).splitlines() if line.strip()]
    assert t("Reason code") in lines[0] and len(lines) == 2, lines
    assert refund_id in lines[1] and word in lines[1] and "missing_item" in lines[1], lines

    await staff.goto("/staff/board")
    returns = staff.locator('#board [data-column="return_requested"]')
    return_card = returns.locator(f'.board-card[data-delivery-id="{order["delivery"]["id"]}"]')
    await expect(return_card).to_have_attribute("data-status", "return_requested")
    # Cancelling a return asks to confirm, with a reason the customer will read.
    await return_card.get_by_text(t("Cancel return")).click()
    note = "We found the garlic bread in your bag on the doorstep photo."
    await return_card.get_by_label(t("Reason (the customer sees it)")).fill(note)
    await return_card.get_by_role("button", name=t("Yes, cancel the return")).click()
    await expect(return_card).to_have_count(0, timeout=LIVE_TIMEOUT_MS)

    await expect(page.locator('#refund-status[data-status="cancelled"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator("#refund-cancelled")).to_have_text(
        t("The shop cancelled this refund. No money moved.")
    )
    await expect(page.locator("#refund-cancel-note")).to_contain_text(note)

    # The lookup keeps the money apart: nothing refunded, the cancelled request counted.
    await staff.goto(f"/staff/refunds?q={word}")
    await expect(staff.locator("#total-refunded")).to_have_attribute("data-amount", "0")
    await expect(staff.locator("#total-cancelled")).to_have_attribute("data-count", "1")
    await expect(staff.locator("#total-requested")).to_have_attribute("data-amount", "0")
    await assert_marked(page, "refund")
