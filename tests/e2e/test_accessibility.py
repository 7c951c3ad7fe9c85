"""axe-core on every page, in Korean and in English: no serious or critical violations.

axe is injected into the page, which our Content-Security-Policy (rightly) forbids, so
these browsers bypass CSP; the journey tests keep it on. Each page is checked in the
state a person meets it: with data (an order, a refund, cards on the board) and with
form errors showing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import (
    ACTION_TIMEOUT_MS,
    BROWSER_LOCALES,
    LIVE_TIMEOUT_MS,
    pay_button,
    sign_in,
    words,
)
from tests.support.api import (
    DECLINED_CARD,
    auth,
    create_user,
    delivered_order,
    new_customer,
    order_body,
    paid_order,
    staff_headers,
    wait_for_status,
)
from tests.support.processes import Shop

AXE = Axe()
BLOCKING = ("serious", "critical")


async def assert_accessible(page: Page, what: str, lang: str) -> None:
    """No serious or critical axe violation on ``page``, whose language is ``lang``."""
    await expect(page.locator("html")).to_have_attribute("lang", lang)
    await settled(page)
    results = await AXE.run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    blocking = [v for v in violations if v.get("impact") in BLOCKING]
    report = [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n["target"]) for n in v["nodes"][:5])
        for v in blocking
    ]
    assert not blocking, f"{what} [{lang}]: " + "; ".join(report)


async def settled(page: Page) -> None:
    """Wait for the page a person reads: a live part re-rendered by its stream's first
    message, and the quarter-second fade of new content over (axe measured the contrast
    of text still fading in and called it too faint)."""
    if await page.locator("[sse-connect][data-pause-when-hidden]").count():
        await expect(page.locator('[data-rendered="live"]').first).to_be_attached(
            timeout=LIVE_TIMEOUT_MS
        )
    await page.evaluate(
        """() => Promise.all(document.getAnimations()
            .filter((a) => a.effect && a.effect.getTiming().iterations !== Infinity)
            .map((a) => a.finished.catch(() => null)))"""
    )


@pytest.fixture
async def axe_browser(browser: Browser, shop: Shop, lang: str) -> AsyncIterator[Any]:
    """Make browser profiles in the test's language that let axe be injected."""
    made: list[BrowserContext] = []

    async def make() -> Page:
        ctx = await browser.new_context(
            base_url=shop.url, locale=BROWSER_LOCALES[lang], bypass_csp=True
        )
        ctx.set_default_timeout(ACTION_TIMEOUT_MS)
        made.append(ctx)
        return await ctx.new_page()

    try:
        yield make
    finally:
        for ctx in made:
            await ctx.close()


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_every_page_has_no_serious_accessibility_violations(
    axe_browser: Any, api: httpx.AsyncClient, shop: Shop, lang: str
) -> None:
    def t(text: str) -> str:
        return words(lang, text)

    staff_api = await staff_headers(api, shop.env)
    customer = await new_customer(api, name="Axe Customer")
    delivered = await delivered_order(api, customer, staff_api)
    refund = await api.post(
        "/api/refunds",
        json={"orderId": delivered["id"], "reasonCode": "cold_or_late", "reason": "cold"},
        headers=auth(customer),
    )
    assert refund.status_code == 201, refund.text
    refund_id = refund.json()["id"]
    declined = await api.post(
        "/api/orders", json=order_body(card=DECLINED_CARD), headers=auth(customer)
    )
    await wait_for_status(api, customer, declined.json()["id"], "payment_failed")
    # in the kitchen's queue: window, progress bar, stage badge and the cancel button
    in_progress = await paid_order(api, customer)
    waiting_customer = await new_customer(api)
    waiting = await paid_order(api, waiting_customer)  # a card on the board

    # -- a visitor ---------------------------------------------------------------------
    visitor = await axe_browser()
    for path in ("/", "/login", "/signup", "/no-such-page"):
        await visitor.goto(path)
        await assert_accessible(visitor, path, lang)
    await visitor.goto("/signup")
    await visitor.get_by_role("button", name=t("Sign up")).click()
    await expect(visitor.get_by_role("alert").first).to_be_visible()
    await assert_accessible(visitor, "/signup with errors", lang)
    await visitor.goto("/login")
    await visitor.get_by_label(t("Email"), exact=True).fill("nobody@example.com")
    await visitor.get_by_label(t("Password"), exact=True).fill("wrong-password-123")
    await visitor.get_by_role("button", name=t("Sign in")).click()
    await expect(visitor.get_by_role("alert").first).to_be_visible()
    await assert_accessible(visitor, "/login with errors", lang)

    # -- the customer ------------------------------------------------------------------
    page = await axe_browser()
    await sign_in(page, customer["email"], lang=lang)
    await page.goto("/")
    await page.get_by_role("button", name=re.compile(t("Add"))).first.click()
    await expect(page.locator("#basket .basket-lines li")).to_have_count(1)
    await assert_accessible(page, "/ with a basket", lang)
    await page.goto("/checkout")
    await assert_accessible(page, "/checkout", lang)
    await pay_button(page, lang).click()
    await expect(page.get_by_role("alert").first).to_be_visible()
    await assert_accessible(page, "/checkout with errors", lang)
    for path in (
        "/orders",
        f"/orders/{delivered['id']}",
        f"/orders/{in_progress['id']}",
        f"/orders/{declined.json()['id']}",
        f"/orders/{delivered['id']}/refund",
        f"/refunds/{refund_id}",
        "/coupons",
        "/account",
    ):
        await page.goto(path)
        await assert_accessible(page, path, lang)

    # -- staff and an admin --------------------------------------------------------------
    staff = await axe_browser()
    await sign_in(staff, await create_user(shop.env, "staff"), lang=lang)
    await staff.goto("/staff/board")
    card = staff.locator(f'.board-card[data-delivery-id="{waiting["delivery"]["id"]}"]')
    await expect(card).to_be_visible()
    for path in (
        "/staff/board",
        "/staff/refunds",
        f"/staff/refunds/{refund_id}",
        "/staff/partners",
    ):
        await staff.goto(path)
        await assert_accessible(staff, path, lang)

    admin = await axe_browser()
    await sign_in(admin, await create_user(shop.env, "admin"), lang=lang)
    for path in ("/admin/reasons", "/admin/audit", "/admin/events"):
        await admin.goto(path)
        await assert_accessible(admin, path, lang)

    # leave the shared board as we found it: the return and the queued card go away
    withdrawn = await api.post(f"/api/refunds/{refund_id}/cancel", headers=auth(customer))
    assert withdrawn.status_code == 200, withdrawn.text
    cancelled = await api.post(
        f"/api/orders/{waiting['id']}/cancel", headers=auth(waiting_customer)
    )
    assert cancelled.status_code in (200, 202, 204), cancelled.text
    cancelled = await api.post(f"/api/orders/{in_progress['id']}/cancel", headers=auth(customer))
    assert cancelled.status_code in (200, 202, 204), cancelled.text
