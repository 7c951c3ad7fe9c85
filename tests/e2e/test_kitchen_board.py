"""The staff board as a kitchen display, in real browsers: what a card tells the cook, a
move and its undo followed live by the customer, new orders that announce themselves, a
board that fits a laptop and a kitchen screen, and the admin pages around it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.e2e.conftest import LIVE_TIMEOUT_MS, assert_marked, create_staff, mark, sign_in
from tests.e2e.test_staff_board import card, open_board
from tests.support.api import (
    auth,
    create_user,
    delivered_order,
    new_customer,
    order_body,
    staff_headers,
    wait_for,
)
from tests.support.processes import Shop

NewContext = Callable[[], Awaitable[BrowserContext]]
Words = Callable[..., str]
PHONE = "+39 081 555 0199"
NOTE = "Gate code 4321"


async def place_paid_order(api: httpx.AsyncClient, customer: dict[str, str]) -> dict[str, object]:
    response = await api.post(
        "/api/orders", json=order_body(phone=PHONE, note=NOTE), headers=auth(customer)
    )
    assert response.status_code == 201, response.text
    return await wait_for(
        api, customer, response.json()["id"], lambda v: v["delivery"] is not None, "a delivery"
    )


@pytest.mark.parametrize("lang", ["en", "ko"])
async def test_a_card_tells_the_cook_everything_and_a_move_can_be_undone(
    page: Page, new_context: NewContext, api: httpx.AsyncClient, shop: Shop, t: Words, lang: str
) -> None:
    staff_email = await create_staff(shop)
    board = await open_board(new_context, staff_email, lang)
    customer = await new_customer(api, name="Carla Cook")
    order = await place_paid_order(api, customer)
    delivery_id = str(order["delivery"]["id"])  # type: ignore[index]
    await sign_in(page, customer["email"], lang=lang)
    await page.goto(f"/orders/{order['id']}")
    await expect(page.locator('#order-status[data-rendered="live"]')).to_have_count(
        1, timeout=LIVE_TIMEOUT_MS
    )
    await mark(page, "customer")

    queued = card(board, delivery_id, "queued")
    await expect(queued).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(queued.locator(".customer-name")).to_have_text("Carla Cook")
    await expect(queued.get_by_role("link", name=PHONE)).to_be_visible()
    await expect(queued.locator(".card-note")).to_contain_text(NOTE)
    await expect(queued.locator(".card-total")).to_contain_text(t("Total"))
    promised = re.escape(t("Promised by %(time)s", time="TIME")).replace("TIME", r"\d\d:\d\d")
    await expect(queued.locator(".promised")).to_contain_text(re.compile(promised))
    await expect(queued).to_have_attribute("data-lateness", "on-time")

    await queued.get_by_role("button", name=t("Start preparing")).click()
    preparing = card(board, delivery_id, "preparing")
    await expect(preparing).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#order-status")).to_have_text(
        t("Preparing"), timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.get_by_role("button", name=t("Cancel order"))).to_be_disabled()

    await preparing.get_by_role("button", name=t("Undo")).click()
    await expect(card(board, delivery_id, "queued")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(
        card(board, delivery_id, "queued").get_by_role("button", name=t("Undo"))
    ).to_have_count(0)
    await expect(page.locator("#order-status")).to_have_attribute("data-stage", "queued")
    await expect(page.locator("#order-status")).to_have_text(t("Queued"))
    await expect(
        page.get_by_role("list", name=t("Progress")).locator('[aria-current="step"]')
    ).to_have_text(t("Queued"))
    await expect(page.get_by_role("button", name=t("Cancel order"))).to_be_enabled()
    await assert_marked(page, "customer")

    # The admin's audit trail says who undid what, by name and order number.
    admin = await (await new_context()).new_page()
    await sign_in(admin, await create_user(shop.env, "admin"), lang=lang)
    await admin.goto("/admin/audit")
    undo = admin.locator('#audit tr[data-action="delivery.undo"]').first
    await expect(undo).to_contain_text(t("Undid a kitchen move"))
    await expect(undo.locator(".audit-on")).to_have_text(
        t("Order #%(number)s", number=str(order["id"])[:8])
    )
    # (made by the CLI without --name, this staff member's name is their e-mail address)
    await expect(undo.locator(".audit-who")).to_contain_text(staff_email)
    actor_id = str(await undo.get_attribute("data-actor"))
    await expect(undo.locator(".audit-who")).not_to_contain_text(actor_id[:8])


async def test_new_orders_flash_and_the_sound_choice_is_remembered(
    new_context: NewContext, api: httpx.AsyncClient, shop: Shop
) -> None:
    staff = await staff_headers(api, shop.env)
    # paid just before the board was opened: new in the board's first render as well
    early = await place_paid_order(api, await new_customer(api, name="Ella Early"))
    early_id = str(early["delivery"]["id"])  # type: ignore[index]
    board = await open_board(new_context, await create_staff(shop))
    await expect(card(board, early_id, "queued")).to_have_class(re.compile(r"\bnew-order\b"))
    toggle = board.get_by_role("button", name=re.compile("^Sound"))
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    await board.reload()
    await expect(board.get_by_role("button", name=re.compile("^Sound"))).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(board.locator('#board [data-column="queued"]')).to_be_visible()

    order = await place_paid_order(api, await new_customer(api, name="Nina New"))
    fresh = card(board, str(order["delivery"]["id"]), "queued")  # type: ignore[index]
    await expect(fresh).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(fresh).to_have_class(re.compile(r"\bnew-order\b"))
    await expect(board.locator("#board-announcer")).to_contain_text("New order")
    announced = await board.locator("#board").get_attribute("data-new-orders")

    # Another order moves: the board is rendered again and the new card stays marked,
    # without being announced a second time.
    moved = await api.post(f"/api/deliveries/{early_id}/advance", headers=staff)
    assert moved.status_code == 200, moved.text
    await expect(card(board, early_id, "preparing")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(fresh).to_have_class(re.compile(r"\bnew-order\b"))
    await expect(board.locator("#board")).to_have_attribute("data-new-orders", str(announced))


async def test_a_card_turns_late_on_a_quiet_board(
    new_context: NewContext, api: httpx.AsyncClient, shop: Shop
) -> None:
    """No new render needed: with the live stream and the refresh cut off, the card still
    goes amber, then red, as the (fast-forwarded) minutes pass."""
    order = await place_paid_order(api, await new_customer(api, name="Lou Late"))
    board = await (await new_context()).new_page()
    await board.clock.install()
    await sign_in(board, await create_staff(shop))
    for quiet in ("**/staff/board/stream", "**/staff/board/columns"):
        await board.route(quiet, lambda route: route.abort())
    await board.goto("/staff/board")
    waiting = card(board, str(order["delivery"]["id"]), "queued")  # type: ignore[index]
    await expect(waiting).to_have_attribute("data-lateness", "on-time")
    await expect(waiting.locator(".late-label")).to_have_count(0)
    amber = int(str(await board.locator("#board").get_attribute("data-amber-minutes")))
    red = int(str(await board.locator("#board").get_attribute("data-red-minutes")))

    await board.clock.fast_forward((amber + 1) * 60_000)
    await expect(waiting).to_have_attribute("data-lateness", "late-amber")
    await expect(waiting).to_have_class(re.compile(r"\blate-amber\b"))
    await expect(waiting.locator(".late-label")).to_have_text(
        re.compile(r"^(Running late|Late: \d+ min)$")
    )
    await expect(waiting.locator(".card-minutes")).to_have_text(f"{amber + 1} min")

    await board.clock.fast_forward((red - amber) * 60_000)
    await expect(waiting).to_have_attribute("data-lateness", "late-red")
    await expect(waiting.locator(".late-label")).to_have_text(re.compile(r"^Very late: \d+ min$"))


async def order_coming_back(
    api: httpx.AsyncClient, shop: Shop, name: str
) -> tuple[dict[str, str], dict[str, str], dict[str, Any], dict[str, Any]]:
    """A delivered order whose customer asked for a refund: its return card is on the
    board. Returns staff's headers, the customer, the order's view and the refund."""
    staff = await staff_headers(api, shop.env)
    customer = await new_customer(api, name=name)
    delivered = await delivered_order(api, customer, staff)
    filed = await api.post(
        "/api/refunds",
        json={"orderId": delivered["id"], "reasonCode": "cold_or_late", "reason": "cold"},
        headers=auth(customer),
    )
    assert filed.status_code == 201, filed.text
    return staff, customer, delivered, filed.json()


async def test_a_reason_being_typed_survives_other_orders_moving_on_the_board(
    new_context: NewContext, api: httpx.AsyncClient, shop: Shop
) -> None:
    """A cook half-way through "Cancel return" keeps the form and the words while other
    orders move (each move re-renders the board over SSE), and can then send it."""
    staff, customer, delivered, filed = await order_coming_back(api, shop, "Rita Return")
    other = await place_paid_order(api, await new_customer(api, name="Otto Other"))
    other_id = str(other["delivery"]["id"])  # type: ignore[index]

    board = await open_board(new_context, await create_staff(shop))
    await mark(board, "board")
    returning = card(board, str(delivered["delivery"]["id"]), "return_requested")
    await expect(returning).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    reason = returning.get_by_label("Reason (the customer sees it)")
    note = "The bag was sealed and hot at the door."

    async def move_the_other_order() -> None:
        moved = await api.post(f"/api/deliveries/{other_id}/advance", headers=staff)
        assert moved.status_code == 200, moved.text
        await expect(board.locator("#board")).to_have_attribute(
            "data-refresh-pending", "true", timeout=LIVE_TIMEOUT_MS
        )
        await expect(board.locator("#board-paused")).to_be_visible()

    # A move arriving between the press on "Cancel return" and its release waits: a swap
    # there would replace the summary under the finger and the browser would drop the click.
    # First the other order's own card arrives (its render is not the one under test).
    await expect(card(board, other_id, "queued")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    summary = returning.get_by_text("Cancel return")
    # hover scrolls it into view, and starts again if a refresh of the shared board (another
    # test's late event) replaces it meanwhile; the pointer ends on the summary's centre. A
    # refresh landing between the hover and the measurement leaves nothing to measure for a
    # moment (CI: bounding_box() None): hover again.
    box = None
    for _ in range(10):
        await summary.hover()
        box = await summary.bounding_box()
        if box is not None:
            break
    assert box is not None
    pointer = {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2}
    await board.mouse.down()
    await move_the_other_order()  # into preparing
    # and the "updates wait" notice appears without moving the board under the pointer: the
    # release still lands on the summary that was pressed (a subpixel of layout rounding may
    # move it, a notice pushing the board down by a line would not)
    under_pointer = await summary.evaluate(
        "(summary, p) => summary.contains(document.elementFromPoint(p.x, p.y))", pointer
    )
    assert under_pointer, (box, await summary.bounding_box())
    await board.mouse.up()
    await expect(reason).to_be_visible()
    # The form is open but the focus is still on its summary (the click that opened it):
    # the held move goes on waiting instead of re-rendering the card under the cook (the
    # check after the release has run by the time a 50 ms timer fires).
    await board.evaluate("() => new Promise(resolve => setTimeout(resolve, 50))")
    await expect(board.locator("#board")).to_have_attribute("data-refresh-pending", "true")
    await reason.fill(note)
    # another board event while the reason is typed
    await move_the_other_order()  # into the oven
    await expect(reason).to_have_value(note)
    await expect(reason).to_be_focused()
    await reason.press("End")
    await reason.type(" Sorry!")
    await expect(reason).to_have_value(note + " Sorry!")

    await returning.get_by_role("button", name="Yes, cancel the return").click()
    await expect(returning).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    # the held-back moves show up as soon as the form is done
    await expect(card(board, other_id, "baking")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(board.locator("#board")).not_to_have_attribute("data-refresh-pending", "true")
    await expect(board.locator("#board-paused")).to_be_hidden()
    refund = await api.get(f"/api/refunds/{filed['id']}", headers=auth(customer))
    assert refund.json()["status"] == "cancelled", refund.text
    assert note + " Sorry!" in refund.text, refund.text
    await assert_marked(board, "board")


async def test_a_blank_reason_for_cancelling_a_return_is_named_beside_its_field(
    new_context: NewContext, api: httpx.AsyncClient, shop: Shop
) -> None:
    """Spaces pass the browser's ``required``; the shop refuses them, and the cook reads
    why next to the reason, the form still open with what was typed (it was a banner
    reading "note: Tell the customer why…"), then sends a real reason."""
    _, customer, delivered, filed = await order_coming_back(api, shop, "Bea Blank")
    board = await open_board(new_context, await create_staff(shop))
    returning = card(board, str(delivered["delivery"]["id"]), "return_requested")
    await expect(returning).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await returning.get_by_text("Cancel return").click()
    reason = returning.get_by_label("Reason (the customer sees it)")
    await reason.fill("   ")
    await returning.get_by_role("button", name="Yes, cancel the return").click()

    beside = returning.locator(".error[role=alert]")
    await expect(beside).to_have_text("Tell the customer why (at most 500 characters).")
    await expect(reason).to_have_attribute("aria-invalid", "true")
    await expect(reason).to_have_value("   ")
    await expect(reason).to_be_focused()
    await expect(board.locator("#request-notice")).to_be_hidden()

    await reason.fill("The rider saw it handed over, hot.")
    await returning.get_by_role("button", name="Yes, cancel the return").click()
    await expect(returning).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    refund = await api.get(f"/api/refunds/{filed['id']}", headers=auth(customer))
    assert refund.json()["status"] == "cancelled", refund.text


async def test_the_board_fits_a_laptop_and_a_kitchen_screen(
    new_context: NewContext, api: httpx.AsyncClient, shop: Shop
) -> None:
    """Whatever else is on the shared board, this test puts its own cards in the first and
    the last (widest) column, and checks the collapse against the columns' own counts."""
    _, customer, delivered, filed = await order_coming_back(api, shop, "Test Customer")
    queued = await place_paid_order(api, await new_customer(api))
    board = await open_board(new_context, await create_staff(shop))
    await expect(
        card(board, str(queued["delivery"]["id"]), "queued")  # type: ignore[index]
    ).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(card(board, str(delivered["delivery"]["id"]), "return_requested")).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    for width, height in ((1280, 800), (1920, 1080)):
        await board.set_viewport_size({"width": width, "height": height})
        # Measured in one go: the live stream may swap the board between two reads.
        measured = None
        for _ in range(50):
            measured = await board.evaluate(
                "() => { const col = document.querySelector("
                "'#board [data-column=\"return_requested\"]');"
                " const b = document.querySelector('#board .board');"
                " if (!col || !b) return null;"
                " return [col.getBoundingClientRect().right, b.scrollWidth, b.clientWidth]; }"
            )
            if measured is not None:
                break
            await board.wait_for_timeout(100)
        assert measured is not None, width
        right, scroll_width, client_width = measured
        assert right <= width, (width, measured)
        assert scroll_width <= client_width, (width, measured)
    # Empty columns (and only those) collapse: narrower than any column with cards.
    columns = await board.evaluate(
        "() => [...document.querySelectorAll('#board .board-column')].map(col => ["
        " col.dataset.column, col.querySelectorAll('.board-card').length,"
        " col.classList.contains('empty-column'), col.getBoundingClientRect().width])"
    )
    assert len(columns) == 7, columns
    for name, cards, collapsed, _width in columns:
        assert collapsed == (cards == 0), (name, columns)
    full = [width for _, cards, _, width in columns if cards]
    assert min(full) > max([width for _, cards, _, width in columns if not cards] or [0]), columns
    # Staff words on the breakers; no customer menus for staff.
    await expect(board.locator('#board [data-breaker="courier"]')).to_contain_text(
        re.compile(r"Courier partner: (OK|failing|paused, retry in \d+ s)")
    )
    await expect(board.locator('#board [data-breaker="payment"]')).to_contain_text(
        "Payment provider:"
    )
    nav = board.get_by_role("navigation")
    for customer_link in ("Basket", "My orders", "Coupons"):
        await expect(nav.get_by_role("link", name=customer_link)).to_have_count(0)
    await expect(nav.get_by_role("link", name="Board")).to_be_visible()

    # leave the shared board as we found it
    withdrawn = await api.post(f"/api/refunds/{filed['id']}/cancel", headers=auth(customer))
    assert withdrawn.status_code == 200, withdrawn.text


async def test_on_a_phone_the_board_scrolls_sideways_inside_itself(
    new_context: NewContext, api: httpx.AsyncClient, shop: Shop
) -> None:
    """A card far to the right (delivered, with a note whose label is visually hidden:
    positioned absolutely) must not stretch the page: only the board scrolls sideways."""
    customer = await new_customer(api)
    staff = await staff_headers(api, shop.env)
    order = await place_paid_order(api, customer)
    delivery_id = str(order["delivery"]["id"])  # type: ignore[index]
    for _ in range(3):  # preparing, baking, ready; the partner's rider does the rest
        moved = await api.post(f"/api/deliveries/{delivery_id}/advance", headers=staff)
        assert moved.status_code == 200, moved.text
    await wait_for(
        api, customer, str(order["id"]), lambda v: v["status"] == "fulfilled", "delivered", 20
    )
    board = await open_board(new_context, await create_staff(shop))
    await board.set_viewport_size({"width": 375, "height": 740})
    delivered = card(board, delivery_id, "delivered")
    await expect(delivered).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(delivered.locator(".card-note")).to_contain_text(NOTE)
    page_width, window_width, board_scroll, board_width = await board.evaluate(
        "() => { const b = document.querySelector('#board .board');"
        " return [document.documentElement.scrollWidth, window.innerWidth,"
        " b.scrollWidth, b.clientWidth]; }"
    )
    assert page_width <= window_width, (page_width, window_width)
    assert board_scroll > board_width, (board_scroll, board_width)  # the board scrolls


async def test_admin_edits_one_field_of_a_reason_and_the_rest_stays(page: Page, shop: Shop) -> None:
    await sign_in(page, await create_user(shop.env, "admin"))
    await page.goto("/admin/reasons")
    code = f"e2e_{uuid.uuid4().hex[:6]}"
    await page.get_by_label("Code (an existing code edits that reason)").fill(code)
    await page.get_by_label("Label").fill("Too salty")
    await page.get_by_label("Customers must explain").check()
    await page.get_by_role("button", name="Save").click()
    row = page.locator(f'tr[data-reason="{code}"]')
    await expect(row).to_contain_text("Too salty")

    await row.get_by_role("link", name="Edit Too salty").click()
    await expect(page.get_by_label("Customers must explain")).to_be_checked()
    await expect(page.get_by_label("Offered to customers")).to_be_checked()
    await page.get_by_label("Label").fill("Far too salty")
    await page.get_by_role("button", name="Save").click()
    row = page.locator(f'tr[data-reason="{code}"]')
    await expect(row).to_contain_text("Far too salty")
    await expect(row.locator("td").nth(3)).to_have_text("yes")  # still needs text
    await expect(row.locator("td").nth(4)).to_have_text("yes")  # still offered


async def test_refund_lookup_says_when_from_is_after_to(page: Page, shop: Shop) -> None:
    await sign_in(page, await create_staff(shop))
    await page.goto("/staff/refunds")
    await page.get_by_label("From").fill("2026-11-20")
    await page.get_by_label("To").fill("2026-11-10")
    await page.get_by_role("button", name="Look up").click()
    to_field = page.locator(".field", has=page.get_by_label("To"))
    await expect(to_field.get_by_role("alert")).to_contain_text("before")
    await expect(page.get_by_label("From")).to_have_value("2026-11-20")


async def test_a_keyboard_user_keeps_their_place_on_the_board_after_a_move(
    new_context: NewContext, api: httpx.AsyncClient, shop: Shop, t: Words
) -> None:
    """Enter on a card's button moves the card; the focus stays on that card's next button
    (not on the page's body, where the next Tab starts from the top), and a focused button
    does not hold the board's live updates back as if someone were typing."""
    board = await open_board(new_context, await create_staff(shop))
    order = await place_paid_order(api, await new_customer(api, name="Kira Keys"))
    delivery_id = str(order["delivery"]["id"])  # type: ignore[index]
    start = card(board, delivery_id, "queued").get_by_role("button", name=t("Start preparing"))
    await expect(start).to_be_visible(timeout=LIVE_TIMEOUT_MS)

    await start.focus()
    await board.keyboard.press("Enter")
    preparing = card(board, delivery_id, "preparing")
    await expect(preparing).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(preparing.get_by_role("button", name=t("Into the oven"))).to_be_focused()
    await expect(board.locator("#board")).not_to_have_attribute("data-refresh-pending", "true")

    # another order arrives while the focus rests on the button: it shows, live
    other = await place_paid_order(api, await new_customer(api, name="Otto Other"))
    await expect(card(board, str(other["delivery"]["id"]), "queued")).to_be_visible(  # type: ignore[index]
        timeout=LIVE_TIMEOUT_MS
    )
    await expect(preparing.get_by_role("button", name=t("Into the oven"))).to_be_focused()
