"""Checkout in a real browser: what a person types survives a failed payment, a typo in the
card number is caught before any order exists, and a double submit lands on the order."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import LIVE_TIMEOUT_MS, pay_button, sign_in, words
from tests.e2e.test_order_live import ORDER_URL, fill_basket, sign_up
from tests.support.api import (
    DECLINED_CARD,
    GOOD_CARD,
    auth,
    delivered_order,
    new_customer,
    staff_headers,
)
from tests.support.processes import Shop, extra_web
from tests.support.redis_server import RedisServer

Words = Callable[..., str]


def english(text: str, **params: str) -> str:
    return words("en", text, **params)


ADDRESS = "Via Roma 1, Napoli"
PHONE = "+39 081 555 0101"
NOTE = "Third floor, ring twice"


async def open_checkout(page: Page, t: Words = english) -> None:
    await page.locator("#basket").get_by_role("link", name=t("Checkout")).click()
    await expect(page.get_by_role("heading", name=t("Checkout"))).to_be_visible()


async def fill_details(page: Page, card: str, t: Words = english) -> None:
    await page.get_by_label(t("Delivery address")).fill(ADDRESS)
    await page.get_by_label(t("Phone (for the rider)")).fill(PHONE)
    await page.get_by_label(t("Delivery note")).fill(NOTE)
    await page.get_by_label(t("Card number")).fill(card)


async def basket_names(page: Page) -> list[str]:
    names = page.locator("#basket .basket-lines li .name")
    return sorted(n.strip() for n in await names.all_inner_texts())


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_declined_card_then_another_card_with_basket_and_details_kept(
    page: Page, t: Words, lang: str
) -> None:
    await sign_up(page, t)
    names = await fill_basket(page, t)
    await open_checkout(page, t)
    total = (await page.locator("#checkout-total").inner_text()).strip()
    await expect(pay_button(page, lang)).to_contain_text(total)
    await fill_details(page, DECLINED_CARD, t)
    await pay_button(page, lang).click()
    await expect(page).to_have_url(ORDER_URL)
    failed_order = page.url

    await expect(page.locator('#order-status[data-status="payment_failed"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.get_by_role("alert")).to_contain_text(t("Your card was declined."))
    # meanwhile another pizza went into the basket: trying again replaces it, and says so
    await page.goto("/")
    third = (await page.locator("li.pizza").nth(2).get_by_role("heading").inner_text()).strip()
    await page.get_by_role("button", name=t("Add %(pizza)s", pizza=third), exact=True).click()
    await expect(page.locator("#basket-count")).to_have_text("1")
    await page.goto(failed_order)
    await page.get_by_role("button", name=t("Try another card")).click()

    await expect(page).to_have_url(re.compile(r"/checkout/?$"))
    await expect(page.locator("#retrying")).to_contain_text(
        t("Your pizzas and details are back. Try another card.")
    )
    await expect(page.locator("#basket-replaced")).to_have_text(
        t("They replaced what was in your basket.")
    )
    assert await basket_names(page) == sorted(names)
    await expect(page.locator("#basket-count")).to_have_text("2")
    await expect(page.get_by_label(t("Delivery address"))).to_have_value(ADDRESS)
    await expect(page.get_by_label(t("Phone (for the rider)"))).to_have_value(PHONE)
    await expect(page.get_by_label(t("Delivery note"))).to_have_value(NOTE)
    await expect(page.get_by_label(t("Card number"))).to_have_value("")
    await expect(page.locator("#checkout-total")).to_have_text(total)

    await page.get_by_label(t("Card number")).fill(GOOD_CARD)
    await pay_button(page, lang).click()
    await expect(page).to_have_url(ORDER_URL)
    assert page.url != failed_order
    await expect(page.locator('#order-status[data-status="paid"]')).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    for name in names:
        await expect(page.locator("#order-live").get_by_text(name)).to_be_visible()
    await expect(page.locator("#basket-count")).to_have_text("0")
    paid_order = page.url

    # The failed order still offers another card; trying again from it (an old tab, the
    # Back button) shows the order already placed instead of charging for the pizzas twice.
    await page.goto(failed_order)
    await page.get_by_role("button", name=t("Try another card")).click()
    await expect(page).to_have_url(paid_order)
    await expect(page.locator("#order-notice")).to_have_text(
        t("You already ordered these pizzas again after that payment failed: this is that order.")
    )
    await expect(page.locator("#basket-count")).to_have_text("0")


async def test_switching_language_at_checkout_keeps_what_was_typed_but_the_card(
    page: Page,
) -> None:
    """The switch reloads the page in Korean: the address, phone and note come back with
    it (the card number is never kept anywhere)."""
    await sign_up(page)
    await fill_basket(page)
    await open_checkout(page)
    await fill_details(page, GOOD_CARD)

    await page.locator("#language-ko").click()

    await expect(page.locator("html")).to_have_attribute("lang", "ko")
    await expect(page.get_by_label(words("ko", "Delivery address"))).to_have_value(ADDRESS)
    await expect(page.get_by_label(words("ko", "Phone (for the rider)"))).to_have_value(PHONE)
    await expect(page.get_by_label(words("ko", "Delivery note"))).to_have_value(NOTE)
    await expect(page.get_by_label(words("ko", "Card number"))).to_have_value("")
    assert await page.evaluate("sessionStorage.getItem('pizzeria.typed')") is None, "used once"
    await page.reload()
    await expect(page.get_by_label(words("ko", "Delivery address"))).to_have_value("")


async def test_a_card_number_typo_is_caught_at_checkout_before_any_order(page: Page) -> None:
    await sign_up(page)
    await fill_basket(page)
    await open_checkout(page)
    typo = "4242 4242 4242 4241"  # one digit off: fails the Luhn check
    await fill_details(page, typo)
    await page.get_by_role("button", name="Place order and pay").click()

    await expect(page).to_have_url(re.compile(r"/checkout/?$"))
    card = page.locator(".field", has=page.get_by_label("Card number"))
    await expect(card.get_by_role("alert")).to_contain_text("typo")
    # Everything else typed is kept; the card number is never sent back (security).
    await expect(page.get_by_label("Card number")).to_have_value("")
    await expect(page.get_by_label("Card number")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Delivery address")).to_have_value(ADDRESS)
    await expect(page.get_by_label("Delivery note")).to_have_value(NOTE)
    await expect(page.locator("#basket .basket-lines li")).to_have_count(2)

    await page.goto("/orders")
    await expect(page.locator("a[href^='/orders/']")).to_have_count(0)


async def test_a_back_to_back_double_submit_lands_on_the_placed_order(page: Page) -> None:
    await sign_up(page)
    names = await fill_basket(page)
    await open_checkout(page)
    await fill_details(page, GOOD_CARD)

    # The first submit reaches the shop and completes (the order is placed, the basket
    # emptied) before the second, identical submit of the same form arrives.
    first = await page.evaluate(
        """async () => {
            const form = document.querySelector("form.checkout-form");
            const response = await fetch(form.action, {method: "POST", body: new FormData(form)});
            return response.url;
        }"""
    )
    assert ORDER_URL.search(first), first
    await page.get_by_role("button", name="Place order and pay").click()

    await expect(page).to_have_url(ORDER_URL)
    assert page.url == first, (page.url, first)
    await expect(page.get_by_text("Add at least one pizza.")).to_have_count(0)
    for name in names:
        await expect(page.locator("#order-live").get_by_text(name)).to_be_visible()
    await page.goto("/orders")
    await expect(page.locator("a[href^='/orders/']")).to_have_count(1)


async def test_a_basket_changed_beside_the_checkout_form_is_what_pay_pays_for(
    page: Page,
) -> None:
    """The basket beside the form re-renders itself (htmx); the form's amount, its pay
    button and the fingerprint it sends follow, so the first Pay goes through instead of
    a "your basket changed" refusal with the card number gone."""
    await sign_up(page)
    names = await fill_basket(page)
    await open_checkout(page)
    await fill_details(page, GOOD_CARD)
    basket = page.locator("#basket")
    await basket.get_by_role("button", name=f"One more {names[0]}").click()
    await expect(basket.locator(".qty").first).to_have_text("2")
    await basket_settled(page)
    await basket.get_by_role("button", name=f"Remove {names[1]}").click()
    await expect(basket.locator(".basket-lines li")).to_have_count(1)
    await basket_settled(page)

    total = (await page.locator("#basket-total").inner_text()).strip()
    await expect(page.locator("#checkout-total")).to_have_text(total)
    await expect(pay_button(page, "en")).to_contain_text(total)
    await expect(page.get_by_label("Card number")).to_have_value(GOOD_CARD)  # typed, kept
    await pay_button(page, "en").click()
    await expect(page).to_have_url(ORDER_URL)
    live = page.locator("#order-live")
    await expect(live.get_by_text(names[0])).to_be_visible()
    await expect(live.get_by_text(names[1])).to_have_count(0)
    await expect(live.get_by_text(total).first).to_be_visible()


def won(text: str) -> int:
    """An amount as the page shows it ("₩13,900") in won."""
    return int(re.sub(r"[^0-9]", "", text))


async def test_a_coupon_typed_at_checkout_shows_what_pay_will_charge(
    page: Page, api: httpx.AsyncClient, shop: Shop
) -> None:
    """Leaving the coupon field checks the code: a bad one is named next to the field with
    the amount unchanged, a good one takes its discount off the amount and the Pay button
    before Pay is pressed (it used to show the full price and charge less), and the order
    costs what the button said; the basket changing beside the form keeps the discount."""
    customer = await new_customer(api, name="Cara Coupon")
    earned = await delivered_order(api, customer, await staff_headers(api, shop.env))
    coupon = earned["coupon"]
    await sign_in(page, customer["email"])
    await page.goto("/")
    names = await fill_basket(page)
    await open_checkout(page)
    full = won(await page.locator("#checkout-total").inner_text())
    await fill_details(page, GOOD_CARD)

    field = page.get_by_label("Coupon (optional)")
    await field.fill("PIZZA-NOPE-NOPE")
    await page.get_by_label("Card number").focus()  # leaving the field checks it
    await expect(page.locator("#coupon_code-error")).to_have_text("This coupon code is not valid.")
    assert won(await page.locator("#checkout-total").inner_text()) == full

    await page.get_by_label("Coupon (optional)").fill(coupon["code"].lower())
    await page.get_by_label("Card number").focus()
    discounted = full - coupon["discount"]
    await expect(page.locator("#coupon_code-error")).to_have_count(0)
    await expect(page.locator("#checkout-total")).to_contain_text(f"{discounted:,}")
    await expect(pay_button(page, "en")).to_contain_text(f"{discounted:,}")
    await expect(page.get_by_label("Card number")).to_have_value(GOOD_CARD)  # not re-rendered

    basket = page.locator("#basket")
    await basket.get_by_role("button", name=f"One more {names[0]}").click()
    await expect(basket.locator(".qty").first).to_have_text("2")
    await basket_settled(page)
    grown = won(await page.locator("#basket-total").inner_text())
    charged = f"{grown - coupon['discount']:,}"
    await expect(pay_button(page, "en")).to_contain_text(charged)

    await page.get_by_label("Delivery address").fill("")  # refused: the page comes back
    await pay_button(page, "en").click()
    await expect(page.locator("#address-error")).to_be_visible()
    await expect(page.locator("#checkout-total")).to_contain_text(charged)
    await expect(pay_button(page, "en")).to_contain_text(charged)
    off = f"Takes ₩{coupon['discount']:,} off this order."
    await expect(page.get_by_text(off)).to_be_visible()
    await page.get_by_label("Delivery address").fill(ADDRESS)
    await page.get_by_label("Card number").fill(GOOD_CARD)
    await pay_button(page, "en").click()
    await expect(page).to_have_url(ORDER_URL)
    view = (
        await api.get(f"/api/orders/{page.url.rsplit('/', 1)[1]}", headers=auth(customer))
    ).json()
    assert view["totalAmount"] == grown - coupon["discount"]
    assert view["discountAmount"] == coupon["discount"]
    # the coupon is used: the next checkout keeps the address, not the code
    await page.goto("/")
    await fill_basket(page)
    await open_checkout(page)
    await expect(page.get_by_label("Delivery address")).to_have_value(ADDRESS)
    await expect(page.get_by_label("Coupon (optional)")).to_have_value("")
    await expect(page.locator("#coupon_code-error")).to_have_count(0)


async def test_emptying_the_basket_beside_the_checkout_form_disables_pay(page: Page) -> None:
    await sign_up(page)
    names = await fill_basket(page)
    await open_checkout(page)
    basket = page.locator("#basket")
    for name in names:
        await basket.get_by_role("button", name=f"Remove {name}").click()
        await basket_settled(page)
    await expect(basket.locator(".basket-lines li")).to_have_count(0)
    await expect(pay_button(page, "en")).to_be_disabled()


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_on_a_phone_the_total_stays_above_the_pay_button(
    page: Page, t: Words, lang: str
) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await sign_up(page, t)
    await fill_basket(page, t)
    await open_checkout(page, t)
    await page.get_by_label(t("Delivery address")).focus()  # at the top of a long form
    total = page.locator("#checkout-total")
    pay = pay_button(page, lang)
    await expect(pay).to_be_in_viewport()
    await expect(total).to_be_in_viewport()
    await expect(pay).to_contain_text((await total.inner_text()).strip())
    total_box = await total.bounding_box()
    pay_box = await pay.bounding_box()
    assert total_box is not None and pay_box is not None
    assert total_box["y"] + total_box["height"] <= pay_box["y"], (total_box, pay_box)
    assert pay_box["y"] + pay_box["height"] <= 844, pay_box


@contextlib.contextmanager
def replica_on_its_own_redis(shop: Shop) -> Iterator[tuple[str, RedisServer]]:
    """A second web process of the shop whose Redis (sessions above all) the test can
    stop in its tracks without touching the shop every other test uses."""
    redis_server = RedisServer()
    redis_server.start()
    try:
        with extra_web(shop, 1, REDIS_URL=redis_server.url, REDIS_TIMEOUT_SECONDS="1") as [url]:
            yield url, redis_server
    finally:
        redis_server.close()


async def test_a_checkout_sent_while_the_session_store_hangs_goes_back_with_what_was_typed(
    browser: Browser, shop: Shop
) -> None:
    """The session (basket, sign-in, CSRF) lives in Redis: when it hangs, the shop cannot
    keep what was typed for the next try, and the answer is a 503. The error page leads
    back in history, where the browser still has the form as it was left."""
    with replica_on_its_own_redis(shop) as (url, redis_server):
        context = await browser.new_context(base_url=url, locale="en-US")
        try:
            page = await context.new_page()
            await sign_up(page)
            await fill_basket(page)
            await open_checkout(page)
            await fill_details(page, GOOD_CARD)
            redis_server.pause()
            try:
                await pay_button(page, "en").click()
                await expect(page.get_by_role("heading", name="Sorry")).to_be_visible()
                await expect(page.locator("#main")).to_contain_text(
                    "A service we depend on is unavailable"
                )
                # its script too, while Redis still hangs (a static file needs no session)
                await page.wait_for_load_state("load")
            finally:
                redis_server.resume()
            await page.get_by_role("link", name="Back to your form, with what you typed").click()

            await expect(page).to_have_url(re.compile(r"/checkout/?$"))
            await expect(page.get_by_label("Delivery address")).to_have_value(ADDRESS)
            await expect(page.get_by_label("Phone (for the rider)")).to_have_value(PHONE)
            await expect(page.get_by_label("Delivery note")).to_have_value(NOTE)
            await expect(page.get_by_label("Card number")).to_have_value(GOOD_CARD)
            await pay_button(page, "en").click()
            await expect(page).to_have_url(ORDER_URL)
        finally:
            await context.close()


async def test_an_add_refused_in_a_stale_tab_says_so_and_a_basket_changed_meanwhile_is_not_charged(
    page: Page, context: BrowserContext
) -> None:
    """Two tabs of one browser. The menu tab was opened before signing up in the other, so
    its buttons carry a form token that no longer counts: its Add is refused, and says so
    instead of doing nothing. Then the checkout tab's basket grows in the menu tab: Pay
    shows the new basket and total first, and charges nothing. Back after paying shows
    no card number."""
    stale = await context.new_page()
    await stale.goto("/")
    await sign_up(page)  # a new session: the stale tab's form token is gone
    first = stale.locator("li.pizza").first
    name = (await first.get_by_role("heading").inner_text()).strip()
    await stale.get_by_role("button", name=f"Add {name}", exact=True).click()
    notice = stale.locator("#request-notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("expired")
    await stale.reload()
    await expect(notice).to_be_hidden()

    await page.get_by_role("button", name=f"Add {name}", exact=True).click()
    await expect(page.locator("#basket-count")).to_have_text("1")
    await open_checkout(page)
    shown = (await page.locator("#checkout-total").inner_text()).strip()
    await fill_details(page, GOOD_CARD)
    await stale.get_by_role("button", name=f"Add {name}", exact=True).click()
    await expect(stale.locator("#basket-count")).to_have_text("2")

    await page.locator("#pay-button").click()
    await expect(page.get_by_role("alert")).to_contain_text("Your basket changed")
    now = (await page.locator("#checkout-total").inner_text()).strip()
    assert now != shown, (shown, now)
    await expect(page.locator("#pay-button")).to_contain_text(now)
    await expect(page.get_by_label("Delivery address")).to_have_value(ADDRESS)
    await page.get_by_label("Card number").fill(GOOD_CARD)
    await page.locator("#pay-button").click()
    await expect(page).to_have_url(ORDER_URL)

    await stale.get_by_role("button", name=f"Add {name}", exact=True).click()
    await expect(stale.locator("#basket-count")).to_have_text("1")  # the paid basket, emptied
    await page.goto("/checkout")
    await page.get_by_label("Card number").fill(GOOD_CARD)
    await page.locator("#pay-button").click()
    await expect(page).to_have_url(ORDER_URL)
    await page.go_back()  # the checkout again, its basket now empty: no card number on it
    await expect(page.locator("#pay-button")).to_be_disabled()
    await expect(page.get_by_label("Card number")).to_have_value("")


async def basket_settled(page: Page) -> None:
    """htmx readies a swapped-in form only when it settles, 20 ms after the swap: a key a
    test presses before then posts the plain form and reloads the page (a person that fast
    gets the same basket, only without keeping their place)."""
    await expect(page.locator("#basket")).not_to_have_class(re.compile(r"\bhtmx-settling\b"))


async def test_a_keyboard_user_keeps_their_place_in_the_basket(page: Page) -> None:
    """Enter on the basket's "one more" re-renders the basket: focus stays on that button
    (it went to the top of the page), and on the basket when the line is gone."""
    await sign_up(page)
    first = page.locator("li.pizza").first
    name = (await first.get_by_role("heading").inner_text()).strip()
    await page.get_by_role("button", name=f"Add {name}", exact=True).click()
    more = page.get_by_role("button", name=f"One more {name}")
    await expect(more).to_be_visible()
    await basket_settled(page)
    await more.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#basket .qty").first).to_have_text("2")
    await expect(more).to_be_focused()
    await page.keyboard.press("Enter")  # again, from where the first press left it
    await expect(page.locator("#basket .qty").first).to_have_text("3")
    await expect(more).to_be_focused()  # restored when the basket settled

    # one who moves on before the basket settles (here: to "remove", as the swap lands)
    # stays where they moved to; the restore does not pull them back to "one more"
    remove = page.get_by_role("button", name=f"Remove {name}")
    await page.evaluate(
        """() => document.addEventListener("htmx:afterSwap", () =>
             document.querySelector("#basket form[action='/basket/remove'] button").focus(),
             {once: true})"""
    )
    await page.keyboard.press("Enter")
    await expect(page.locator("#basket .qty").first).to_have_text("4")
    await basket_settled(page)
    await expect(remove).to_be_focused()

    await page.keyboard.press("Enter")
    await expect(page.locator("#basket .basket-lines li")).to_have_count(0)
    await expect(page.locator("#basket")).to_be_focused()


async def test_a_field_a_browser_extension_styled_is_checked_within_the_csp(
    page: Page, context: BrowserContext
) -> None:
    """A password manager or a spelling add-on decorates the fields it works on with a
    style set through the DOM, which the CSP allows. When htmx swapped such a field in
    again (the coupon check), it copied the old element's style attribute across, which
    the CSP refuses (``style-src``): the console error the customer walk saw. htmx now
    settles classes and sizes only (``attributesToSettle``)."""
    refused: list[str] = []
    context.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    await sign_up(page)
    await fill_basket(page)
    await open_checkout(page)
    field = page.get_by_label("Coupon (optional)")
    await field.evaluate("input => { input.style.backgroundImage = 'none'; }")
    await field.fill("PIZZA-NOPE-NOPE")
    await page.get_by_label("Card number").focus()  # leaving the field checks it
    await expect(page.locator("#coupon_code-error")).to_have_text("This coupon code is not valid.")
    await expect(page.locator("#coupon-field")).not_to_have_class(re.compile(r"\bhtmx-settling\b"))
    await page.get_by_label("Card number").fill(GOOD_CARD)  # a round trip to the page after
    assert refused == []
