"""The kitchen's live board and the customer's live order page, in real browsers.

Two staff members look at the board in separate sessions; a customer watches their order.
Nothing is reloaded: every change arrives over SSE, which the window marks prove.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from playwright.async_api import BrowserContext, Locator, Page, expect

from tests.e2e.conftest import LIVE_TIMEOUT_MS, assert_marked, create_staff, mark, sign_in, words
from tests.support.api import new_customer, paid_order, staff_headers
from tests.support.processes import Shop

NewContext = Callable[[], Awaitable[BrowserContext]]


async def open_board(new_context: NewContext, email: str, lang: str = "en") -> Page:
    page = await (await new_context()).new_page()
    await sign_in(page, email, lang=lang)
    await page.goto("/staff/board")
    await expect(page.get_by_role("heading", name=words(lang, "Delivery board"))).to_be_visible()
    await expect(page.locator('#board [data-column="queued"]')).to_be_visible()
    return page


def card(page: Page, delivery_id: str, column: str) -> Locator:
    return page.locator(
        f'#board [data-column="{column}"] .board-card[data-delivery-id="{delivery_id}"]'
    )


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_two_staff_boards_follow_a_new_order_and_a_move_live(
    new_context: NewContext, api: httpx.AsyncClient, shop: Shop, lang: str
) -> None:
    first = await open_board(new_context, await create_staff(shop), lang)
    second = await open_board(new_context, await create_staff(shop), lang)
    for board in (first, second):
        await mark(board, "board")

    customer = await new_customer(api)
    order = await paid_order(api, customer)
    delivery_id = order["delivery"]["id"]

    for board in (first, second):
        queued = card(board, delivery_id, "queued")
        await expect(queued).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        await expect(queued).to_have_attribute("data-status", "queued")
        await expect(board.locator("#board [data-breaker]")).to_have_count(2)
        await expect(board.locator('#board [data-breaker="payment"]')).to_be_visible()
        await expect(board.locator('#board [data-breaker="courier"]')).to_be_visible()

    if lang == "ko":
        await expect(first.locator('#board [data-column="queued"] h2')).to_contain_text("접수 대기")
    start = words(lang, "Start preparing")
    await card(first, delivery_id, "queued").get_by_role("button", name=start).click()

    for board in (first, second):
        preparing = card(board, delivery_id, "preparing")
        await expect(preparing).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        await expect(preparing).to_have_attribute("data-status", "preparing")
        await expect(card(board, delivery_id, "queued")).to_have_count(0)
        await expect(board.locator("#board [data-breaker]")).to_have_count(2)
    for board in (first, second):
        await assert_marked(board, "board")


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_customer_page_follows_the_kitchen_and_the_rider_to_the_coupon(
    page: Page, api: httpx.AsyncClient, shop: Shop, lang: str
) -> None:
    customer = await new_customer(api, name="Grace Live")
    staff = await staff_headers(api, shop.env)
    order = await paid_order(api, customer)
    await sign_in(page, customer["email"], lang=lang)
    await page.goto(f"/orders/{order['id']}")
    await expect(page.locator("#order-status")).to_have_attribute("data-status", "paid")
    await mark(page, "order")

    timeline = page.locator("#order-live .timeline")
    for stage in ("preparing", "baking", "ready"):
        moved = await api.post(f"/api/deliveries/{order['delivery']['id']}/advance", headers=staff)
        assert moved.status_code == 200, moved.text
        assert moved.json()["status"] == stage, moved.text
        await expect(timeline.locator(f'[data-status="{stage}"]')).to_be_visible(
            timeout=LIVE_TIMEOUT_MS
        )

    # The partner's rider takes it from here.
    for stage in ("out_for_delivery", "delivered"):
        await expect(timeline.locator(f'[data-status="{stage}"]')).to_be_visible(
            timeout=LIVE_TIMEOUT_MS
        )
    await expect(page.locator('#order-status[data-status="fulfilled"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator('#order-coupon[data-coupon-status="issued"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    for stage in ("placed", "paid", "preparing", "baking", "ready", "out_for_delivery"):
        await expect(timeline.locator(f'[data-status="{stage}"]')).to_have_count(1)
    # Delivered: every step done, no window any more, and no rider named once they left.
    progress = page.get_by_role("list", name=words(lang, "Progress"))
    await expect(progress.locator(".done")).to_have_count(5)
    await expect(progress.locator('[aria-current="step"]')).to_have_text(words(lang, "Delivered"))
    await expect(page.locator("#order-status")).to_have_text(words(lang, "Delivered"))
    await expect(timeline.locator('[data-status="delivered"]')).to_contain_text(
        words(lang, "Delivered. Buon appetito!")
    )
    if lang == "ko":
        await expect(page.locator("#order-coupon")).to_contain_text("감사합니다! 쿠폰")
        await expect(page.locator("#order-coupon")).to_contain_text("₩3,000 할인받으세요")
    await expect(page.locator("#order-eta")).to_have_count(0)
    await expect(page.locator("#rider-status")).to_have_count(0)
    await assert_marked(page, "order")
