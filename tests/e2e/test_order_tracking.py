"""The customer's tracker: basket plus and minus, a delivery window, a progress bar that follows the
kitchen live, and what a screen reader hears."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from app.platform import i18n
from tests.e2e.conftest import LIVE_TIMEOUT_MS, assert_marked, mark, pay_button, sign_in
from tests.e2e.test_order_live import ORDER_URL, sign_up
from tests.support.api import GOOD_CARD, auth, new_customer, paid_order, staff_headers
from tests.support.processes import Shop

Words = Callable[..., str]


def pizzas_in_basket(lang: str, n: int) -> str:
    """The start of what a screen reader hears after a basket change ("Basket: 2 pizzas")."""
    singular = "Basket: %(num)s pizza, total %(amount)s."
    plural = "Basket: %(num)s pizzas, total %(amount)s."
    return i18n.ngettext(singular, plural, n, lang).split(",")[0] % {"num": n}


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_basket_steppers_and_announcements(page: Page, t: Words, lang: str) -> None:
    await sign_up(page, t)
    await expect(page.get_by_role("link", name=t("Skip to content"))).to_be_attached()
    first = page.locator("li.pizza").first
    name = (await first.get_by_role("heading").inner_text()).strip()
    await page.get_by_role("button", name=t("Add %(pizza)s", pizza=name), exact=True).click()
    line = page.locator("#basket .basket-lines li", has_text=name)
    await expect(line.locator(".qty")).to_have_text("1")
    await expect(page.locator("#basket-announcer")).to_contain_text(pizzas_in_basket(lang, 1))
    # the minus and plus are plain buttons around the quantity: no order-timeline dot drawn on them
    markers = await line.locator(".stepper button").evaluate_all(
        "buttons => buttons.map(b => getComputedStyle(b, '::before').content)"
    )
    assert markers and set(markers) == {"none"}, markers

    await line.get_by_role("button", name=t("One more %(pizza)s", pizza=name)).click()
    await expect(line.locator(".qty")).to_have_text("2")
    await expect(page.locator("#basket-count")).to_have_text("2")
    await expect(page.locator("#basket-announcer")).to_contain_text(pizzas_in_basket(lang, 2))

    less = line.get_by_role("button", name=t("One %(pizza)s less", pizza=name))
    await less.click()
    await expect(line.locator(".qty")).to_have_text("1")
    await less.click()
    await expect(page.locator("#basket .basket-lines li")).to_have_count(0)
    await expect(page.locator("#basket-announcer")).to_have_text(t("Your basket is empty."))


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_the_basket_is_one_tap_away_on_a_phone(page: Page, t: Words) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await sign_up(page, t)
    jump = page.get_by_role("link", name=t("Go to your basket"))
    await expect(jump).to_be_in_viewport()
    await jump.click()
    await expect(page.get_by_role("heading", name=t("Your basket"))).to_be_in_viewport()


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_live_order_page_shows_the_window_and_follows_the_kitchen(
    page: Page, api: httpx.AsyncClient, shop: Shop, t: Words, lang: str
) -> None:
    customer = await new_customer(api, name="Tia Tracker")
    await sign_in(page, customer["email"], lang=lang)
    first = page.locator("li.pizza").first
    name = (await first.get_by_role("heading").inner_text()).strip()
    await page.get_by_role("button", name=t("Add %(pizza)s", pizza=name), exact=True).click()
    await page.locator("#basket").get_by_role("link", name=t("Checkout")).click()
    await page.get_by_label(t("Delivery address")).fill("Via Roma 1, Napoli")
    await page.get_by_label(t("Card number")).fill(GOOD_CARD)
    await pay_button(page, lang).click()
    await expect(page).to_have_url(ORDER_URL)
    order_id = page.url.rsplit("/", 1)[1]

    estimated = t("Estimated delivery %(window)s", window="").strip()
    eta = page.locator("#order-eta")
    await expect(eta).to_contain_text(estimated, timeout=LIVE_TIMEOUT_MS)
    await expect(eta.locator("time")).to_have_count(2)
    earliest = datetime.fromisoformat(str(await eta.get_attribute("data-earliest")))
    latest = datetime.fromisoformat(str(await eta.get_attribute("data-latest")))
    assert earliest < latest
    progress = page.get_by_role("list", name=t("Progress"))
    await expect(progress.locator('[aria-current="step"]')).to_have_text(t("Queued"))
    # the badge names the stage the order is in, the same word as the progress bar
    await expect(page.locator("#order-status")).to_have_text(t("Queued"))
    await expect(page.locator("#order-status")).to_have_attribute("data-stage", "queued")
    await mark(page, "tracking")

    # The API's order view carries the same window, as ISO-8601 times. The window exists
    # from payment on and the rider's estimate (which may move it) is projected a moment
    # later, so both sides are compared once the rider is in the view.
    staff = await staff_headers(api, shop.env)
    deadline = asyncio.get_running_loop().time() + LIVE_TIMEOUT_MS / 1000
    view = (await api.get(f"/api/orders/{order_id}", headers=auth(customer))).json()
    while (view.get("delivery") or {}).get("courierStatus") != "assigned":
        assert asyncio.get_running_loop().time() < deadline, "no rider in the order view"
        await asyncio.sleep(0.1)
        view = (await api.get(f"/api/orders/{order_id}", headers=auth(customer))).json()
    window = view["estimatedDelivery"]
    assert window["runningLate"] is False
    await expect_window(eta, window["earliest"], window["latest"])
    moved = await api.post(f"/api/deliveries/{view['delivery']['id']}/advance", headers=staff)
    assert moved.status_code == 200, moved.text
    await expect(progress.locator('[aria-current="step"]')).to_have_text(
        t("Preparing"), timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator("#order-status")).to_have_text(t("Preparing"))
    await expect(page.locator("#order-status")).to_have_attribute("data-stage", "preparing")
    await expect(progress.locator(".done")).to_have_text([t("Queued")])
    await expect(page.locator("#order-announcer")).to_contain_text(
        re.compile(re.escape(t("Preparing")), re.I)
    )
    await expect(page.locator("#order-eta")).to_contain_text(estimated)
    await assert_marked(page, "tracking")
    # My orders says the same: the stage, not "Paid"
    await page.goto("/orders")
    badge = page.locator(f'tr:has(a[href="/orders/{order_id}"]) .status')
    await expect(badge).to_have_text(t("Preparing"))
    await expect(badge).to_have_attribute("data-stage", "preparing")


async def expect_window(eta: Locator, earliest: str, latest: str) -> None:
    """The live page shows this window (ISO-8601 times compared as instants), once its
    stream has caught up.

    A window is "now + what is left", rounded up to the minute, and a stage that already
    took longer than the shop's quick time leaves nothing of it to wait for (the test
    shop learns its stage times from tests that move orders at once): the page, rendered
    at the last event, and the API, read a moment later, then sit a whole minute apart
    when a minute turned between them, until the page's minute tick. Such a shift of the
    whole window is the same window; a different width (a rider's estimate missing) is
    not."""
    wanted = (datetime.fromisoformat(earliest), datetime.fromisoformat(latest))
    deadline = asyncio.get_running_loop().time() + LIVE_TIMEOUT_MS / 1000
    while True:
        shown = (
            datetime.fromisoformat(str(await eta.get_attribute("data-earliest"))),
            datetime.fromisoformat(str(await eta.get_attribute("data-latest"))),
        )
        shift = {wanted[0] - shown[0], wanted[1] - shown[1]}
        if shift in ({timedelta(0)}, {timedelta(minutes=1)}):  # the same, or a minute on
            return
        assert asyncio.get_running_loop().time() < deadline, f"page shows {shown}, API {wanted}"
        await asyncio.sleep(0.1)


async def backdate_order_view(shop: Shop, order_id: str, by: timedelta) -> None:
    """Make the customer's order view say it was placed and paid ``by`` earlier: a kitchen
    that stalled that long, without waiting for it (no event is written, so nothing
    pushes the page; only time has passed)."""
    url = shop.env["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url)
    try:
        raw = await connection.fetchval(
            "SELECT doc FROM status.order_views WHERE order_id = $1", uuid.UUID(order_id)
        )
        doc = json.loads(raw)

        def earlier(value: str) -> str:
            return (datetime.fromisoformat(value) - by).isoformat()

        doc["createdAt"] = earlier(doc["createdAt"])
        for step in doc["timeline"]:
            step["at"] = earlier(step["at"])
        if doc.get("promisedBy"):  # the promise made at payment, then
            doc["promisedBy"] = earlier(doc["promisedBy"])
        delivery = doc.get("delivery") or {}
        for moment in ("partnerEta", "firstPartnerEta", "firstPartnerEtaAt"):
            if delivery.get(moment):
                delivery[moment] = earlier(delivery[moment])
        await connection.execute(
            "UPDATE status.order_views SET doc = $2::jsonb WHERE order_id = $1",
            uuid.UUID(order_id),
            json.dumps(doc),
        )
    finally:
        await connection.close()


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_a_stalled_order_tells_the_customer_it_runs_late_without_any_move(
    page: Page, api: httpx.AsyncClient, shop: Shop, t: Words, lang: str
) -> None:
    customer = await new_customer(api, name="Stella Stalled")
    order = await paid_order(api, customer)
    await page.clock.install()
    await sign_in(page, customer["email"], lang=lang)
    await page.goto(f"/orders/{order['id']}")
    await expect(page.locator('#order-status[data-rendered="live"]')).to_have_count(
        1, timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator("#order-eta")).to_have_attribute("data-late", "false")
    await expect(page.locator("#order-late")).to_have_count(0)
    await mark(page, "stalled")

    # The kitchen has not touched the order for two hours: no event, only time.
    await backdate_order_view(shop, str(order["id"]), timedelta(hours=2))
    await page.clock.fast_forward(61_000)
    await expect(page.locator("#order-eta")).to_have_attribute(
        "data-late", "true", timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator("#order-late")).to_have_text(t("Sorry, your order is running late."))
    dash = "\u2013"
    new_window = t(f"New estimate: %(earliest)s{dash}%(latest)s", earliest="", latest="")
    await expect(page.locator("#order-eta")).to_contain_text(new_window.strip(f"{dash} "))
    await expect(page.locator("#order-eta time")).to_have_count(2)
    await expect(page.locator("#order-announcer")).to_contain_text(
        t("Sorry, your order is running late.")
    )
    await assert_marked(page, "stalled")

    # leave the shared board as we found it
    cancelled = await api.post(f"/api/orders/{order['id']}/cancel", headers=auth(customer))
    assert cancelled.status_code in (200, 202, 204), cancelled.text
