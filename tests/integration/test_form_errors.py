"""Every HTML form a use case refuses comes back the same way (``app.platform.forms``):
each message next to its field, what was typed kept (never a secret), the refusal's
status; the JSON API names the same fields in camelCase."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import service as accounts
from app.accounts.models import Role
from app.delivery import service as delivery
from tests.support import inproc, webapp
from tests.support.api import PASSWORD

CSRF = "pizzeria_csrf"


@pytest.fixture
async def app(migrated_db: str, sandbox_url: str) -> AsyncIterator[Litestar]:
    async with webapp.running() as running:
        yield running


async def signed_in(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession], role: Role
) -> tuple[str, str]:
    """A new account of ``role`` signed in through the form: its email and CSRF token."""
    email = f"{role.value}-{uuid.uuid4().hex[:10]}@example.com"
    async with session_factory() as session:
        await accounts.sign_up(session, email=email, password=PASSWORD, name="Tester", role=role)
    await client.get("/login")
    response = await client.post(
        "/login", data={"email": email, "password": PASSWORD, "_csrf_token": client.cookies[CSRF]}
    )
    assert response.status_code == 303, response.text
    return email, client.cookies[CSRF]


#: what the checkout page says beside a card field it emptied after a refusal (customer
#: walk: "please check the digits" over an empty field)
KEPT_NOT = "For your safety the card number is not kept: please type it again."


async def test_a_refused_checkout_keeps_what_was_typed_but_the_card_number(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with webapp.client(app) as browser:
        _, csrf = await signed_in(browser, session_factory, Role.customer)
        await browser.post("/basket/add", data={"pizza_id": "1", "qty": "2", "_csrf_token": csrf})
        response = await browser.post(
            "/checkout",
            data={
                "address": "1 Crust Lane",
                "phone": "010-1234-5678",
                "note": "ring twice",
                "card_number": "4242 4242 4242 4241",  # a one-digit typo
                "coupon_code": "",
                "idempotency_key": uuid.uuid4().hex,
                "_csrf_token": csrf,
            },
        )
    assert response.status_code == 422, response.text
    page = response.text
    assert 'id="card_number-error"' in page and "has a typo" in page
    assert 'value="1 Crust Lane"' in page and "ring twice" in page
    assert "4241" not in page
    assert KEPT_NOT in page, "the empty field says why it is empty"


async def test_the_partner_simulator_names_the_wrong_knob_and_the_api_camelizes_it(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with webapp.client(app) as browser:
        email, csrf = await signed_in(browser, session_factory, Role.staff)
        refused = await browser.post(
            "/staff/partners/payment",
            data={"latency_ms": "-5", "error_rate": "0", "_csrf_token": csrf},
        )
        assert refused.status_code == 422, refused.text
        assert "Latency is 0 to 60000 ms." in refused.text
        # what was typed stays in that partner's form, marked and described for readers
        assert 'name="latency_ms" type="number" min="0" max="60000" value="-5"' in refused.text
        assert 'aria-describedby="payment-latency-error"' in refused.text
        assert refused.text.count('value="-5"') == 1  # not in the courier's form
        token = (
            await browser.post(
                "/api/auth/token",
                data={"username": email, "password": PASSWORD},
            )
        ).json()["access_token"]
        api = await browser.put(
            "/api/admin/partners/payment",
            json={"latencyMs": 70_000},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert api.status_code == 422, api.text
        assert [e["field"] for e in api.json()["errors"]] == ["latencyMs"]
        applied = await browser.post(
            "/staff/partners/payment",
            data={"latency_ms": "0", "error_rate": "0", "down": "0", "_csrf_token": csrf},
        )
        assert applied.status_code == 303, applied.text


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} on the page"
    return found.group(1)


def _checkout_form(page: str, csrf: str) -> dict[str, str]:
    return {
        "address": "1 Crust Lane",
        "card_number": "4242 4242 4242 4242",
        "idempotency_key": _hidden(page, "idempotency_key"),
        "basket_seen": _hidden(page, "basket_seen"),
        "_csrf_token": csrf,
    }


async def test_a_basket_changed_in_another_tab_is_shown_again_before_paying(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """The Pay button says an amount: a basket changed since (another tab) is not
    charged at its new total without the customer seeing it first."""
    async with webapp.client(app) as browser:
        _, csrf = await signed_in(browser, session_factory, Role.customer)
        await browser.post("/basket/add", data={"pizza_id": "1", "qty": "1", "_csrf_token": csrf})
        shown = (await browser.get("/checkout")).text
        await browser.post("/basket/add", data={"pizza_id": "2", "qty": "2", "_csrf_token": csrf})

        refused = await browser.post("/checkout", data=_checkout_form(shown, csrf))
        assert refused.status_code == 409, refused.text
        assert "Your basket changed since this page was shown" in refused.text
        assert 'value="1 Crust Lane"' in refused.text, "what was typed stays"
        assert KEPT_NOT in refused.text, "the card is typed again, and the page says so"
        assert KEPT_NOT not in shown
        assert 'href="/orders/' not in (await browser.get("/orders")).text, "no order"

        paid = await browser.post("/checkout", data=_checkout_form(refused.text, csrf))
        assert paid.status_code == 303 and paid.headers["location"].startswith("/orders/")


async def test_a_refused_cancel_is_said_once_on_the_order_page_after_a_redirect(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A refused cancel answers with the order page's address (a reload does not send
    the form again) and says why there, once, above the part live updates re-render."""
    async with webapp.client(app) as browser:
        _, csrf = await signed_in(browser, session_factory, Role.customer)
        await browser.post("/basket/add", data={"pizza_id": "1", "qty": "1", "_csrf_token": csrf})
        shown = (await browser.get("/checkout")).text
        placed = await browser.post("/checkout", data=_checkout_form(shown, csrf))
        order_page = placed.headers["location"]
        cancel = {"_csrf_token": csrf}

        cancelled = await browser.post(f"{order_page}/cancel", data=cancel)
        assert (cancelled.status_code, cancelled.headers["location"]) == (303, order_page)
        assert 'id="order-notice"' not in (await browser.get(order_page)).text

        refused = await browser.post(f"{order_page}/cancel", data=cancel)  # cancelled already
        assert (refused.status_code, refused.headers["location"]) == (303, order_page)
        said = (await browser.get(order_page)).text
        notice = said.split('id="order-notice"', 1)[1].split("</p>", 1)[0]
        assert "can no longer be cancelled" in notice
        assert said.index('id="order-notice"') < said.index('id="order-live"'), "not re-rendered"
        assert 'id="order-notice"' not in (await browser.get(order_page)).text, "said once"


async def test_a_checkout_page_sent_again_shows_its_order_and_keeps_the_new_basket(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """The same checkout page sent twice (Back, then Pay again) places one order: the
    second send lands on it, says why, and leaves what was added since in the basket."""
    async with webapp.client(app) as browser:
        _, csrf = await signed_in(browser, session_factory, Role.customer)
        await browser.post("/basket/add", data={"pizza_id": "1", "qty": "1", "_csrf_token": csrf})
        shown = (await browser.get("/checkout")).text
        placed = await browser.post("/checkout", data=_checkout_form(shown, csrf))
        order_page = placed.headers["location"]
        await browser.post("/basket/add", data={"pizza_id": "2", "qty": "1", "_csrf_token": csrf})

        again = await browser.post("/checkout", data=_checkout_form(shown, csrf))
        assert (again.status_code, again.headers["location"]) == (303, order_page)
        said = (await browser.get(order_page)).text
        notice = said.split('id="order-notice"', 1)[1].split("</p>", 1)[0]
        assert "already placed this order, so nothing was charged again" in notice
        orders = (await browser.get("/orders")).text
        assert set(re.findall(r'href="(/orders/[0-9a-f-]{36})"', orders)) == {order_page}
        assert 'id="basket-count" class="pill">1<' in (await browser.get("/")).text


async def test_the_basket_says_when_an_order_cannot_hold_more(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """The 21st of one pizza does not go in, and the basket says why (the button used to
    do nothing, and the announcer went on saying 20)."""
    async with webapp.client(app) as browser:
        _, csrf = await signed_in(browser, session_factory, Role.customer)
        htmx = {"HX-Request": "true"}
        full = await browser.post(
            "/basket/add", data={"pizza_id": "1", "qty": "20", "_csrf_token": csrf}, headers=htmx
        )
        assert full.status_code == 200, full.text
        assert 'id="basket-refused"' not in full.text
        more = await browser.post(
            "/basket/add", data={"pizza_id": "1", "_csrf_token": csrf}, headers=htmx
        )
        assert more.status_code == 200, more.text
        assert "An order holds at most 20 of one pizza." in more.text
        assert 'data-qty="20"' in more.text

        # without JavaScript the form goes back to the menu, which says it there, once
        plain = await browser.post("/basket/add", data={"pizza_id": "1", "_csrf_token": csrf})
        assert plain.status_code == 303, plain.text
        menu = await browser.get("/")
        assert 'id="menu-notice"' in menu.text and "at most 20 of one pizza" in menu.text
        assert 'id="menu-notice"' not in (await browser.get("/")).text

        # a 31st kind of pizza (the session takes any id; the basket shows the menu's)
        for pizza_id in range(2, 31):
            await browser.post("/basket/add", data={"pizza_id": str(pizza_id), "_csrf_token": csrf})
        kinds = await browser.post(
            "/basket/add", data={"pizza_id": "31", "_csrf_token": csrf}, headers=htmx
        )
        assert "An order holds at most 30 different pizzas." in kinds.text


async def test_an_empty_checkout_links_the_order_it_just_placed(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A reload while paying lands on the checkout with the basket already emptied by the
    order: the page links that order rather than saying nothing of it."""
    async with webapp.client(app) as browser:
        _, csrf = await signed_in(browser, session_factory, Role.customer)
        await browser.post("/basket/add", data={"pizza_id": "1", "qty": "1", "_csrf_token": csrf})
        shown = (await browser.get("/checkout")).text
        placed = await browser.post("/checkout", data=_checkout_form(shown, csrf))
        assert placed.status_code == 303, placed.text
        order_path = placed.headers["location"]
        empty = await browser.get("/checkout")
        assert 'id="last-placed"' in empty.text and f'href="{order_path}"' in empty.text
        assert 'id="last-placed"' not in (await browser.get("/checkout")).text  # said once
        await browser.post("/basket/add", data={"pizza_id": "2", "qty": "1", "_csrf_token": csrf})
        filled = await browser.get("/checkout")
        assert 'id="last-placed"' not in filled.text


async def _cancel_return(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession], ctx: dict[str, Any], note: str
) -> httpx.Response:
    """Staff press "Cancel return" on a delivered order's card with ``note`` as the reason."""
    order_id, _ = await inproc.delivered(session_factory, ctx)
    async with session_factory() as session:
        found = await delivery.delivery_for_order(session, order_id)
    assert found is not None
    async with webapp.client(app) as browser:
        _, csrf = await signed_in(browser, session_factory, Role.staff)
        return await browser.post(
            f"/staff/deliveries/{found.id}/return/cancel",
            data={"note": note, "_csrf_token": csrf},
        )


async def test_a_refusal_on_the_error_page_reads_as_words_and_names_its_field_for_the_script(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession], ctx: dict[str, Any]
) -> None:
    """A form without a page of its own (the board's "Cancel return") is refused on the
    error page: the person reads the message, not "note: …", and the page names the field
    for ``requests.js`` to put the message beside it when htmx sent the form."""
    refused = await _cancel_return(app, session_factory, ctx, "   ")
    assert refused.status_code == 422, refused.text
    message = re.search(r'<p id="error-message"([^>]*)>([^<]*)</p>', refused.text)
    assert message is not None, refused.text
    assert message.group(1) == ' data-field="note"'
    assert message.group(2) == "Tell the customer why (at most 500 characters)."


async def test_a_reason_for_cancelling_a_return_may_not_turn_the_customers_text_around(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession], ctx: dict[str, Any]
) -> None:
    """The customer reads the board's "Cancel return" reason: a right-to-left override in
    it made the rest of the reason read backwards (``app.platform.text.plain``)."""
    refused = await _cancel_return(app, session_factory, ctx, "Sorry \u202etxet desrever\u202c ok")
    assert refused.status_code == 422, refused.text
    assert 'data-field="note"' in refused.text and "printable characters" in refused.text


@pytest.mark.parametrize(
    ("piece", "page"),
    [
        ("/orders/{order}/live", "/orders/{order}?from=mail"),
        ("/staff/board/columns", "/staff/board"),
    ],
)
async def test_signing_in_again_from_a_live_piece_leads_back_to_its_page(
    app: Litestar, piece: str, page: str
) -> None:
    """A page's timer or live refresh (htmx) found the sign-in ended: after signing in the
    person sees the page they were on, not the bare piece it asked for."""
    order = uuid.uuid4()
    piece, page = piece.format(order=order), page.format(order=order)
    async with webapp.client(app) as browser:
        asked = await browser.get(
            piece, headers={"HX-Request": "true", "HX-Current-URL": f"http://shop.test{page}"}
        )
        plain = await browser.get(piece, headers={"HX-Request": "true"})
        elsewhere = await browser.get(
            piece, headers={"HX-Request": "true", "HX-Current-URL": "http://evil.test//evil.test/"}
        )
    assert asked.status_code == 204
    assert asked.headers["HX-Redirect"] == f"/login?next={quote(page)}"
    assert plain.headers["HX-Redirect"] == f"/login?next={piece}"  # no page named: as before
    assert elsewhere.headers["HX-Redirect"] == f"/login?next={piece}"  # never off the site
