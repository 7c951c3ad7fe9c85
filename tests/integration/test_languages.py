"""Korean and English against the running shop: who gets which language, money in won,
times in the shop's zone, stable error codes in the API, CSV for Excel."""

from __future__ import annotations

import csv
import io
import re
import uuid

import httpx
import pytest

from tests.support.api import (
    DECLINED_CARD,
    auth,
    browser_session,
    create_user,
    delivered_order,
    new_customer,
    order_body,
    staff_headers,
    wait_for_status,
)
from tests.support.processes import Shop

KO_BROWSER = {"Accept-Language": "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"}
EN_BROWSER = {"Accept-Language": "en-US,en;q=0.9"}


def lang_of(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', html)
    assert found, html[:200]
    return found.group(1)


async def test_a_korean_browser_gets_korean_on_its_first_visit(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/", headers=KO_BROWSER)
    assert page.status_code == 200
    assert lang_of(page.text) == "ko"
    assert "피자 메뉴" in page.text and "마르게리타" in page.text and "담기" in page.text
    assert "₩15,900" in page.text  # the demo menu is priced in won, no minor units
    assert "Our pizzas" not in page.text


async def test_an_english_browser_gets_english_and_money_in_won(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/", headers=EN_BROWSER)
    assert lang_of(page.text) == "en"
    assert "Our pizzas" in page.text and "Margherita" in page.text and "₩15,900" in page.text
    assert "15900.00" not in page.text and "159.00" not in page.text


async def test_the_switch_sets_a_cookie_that_beats_the_browser(shop: Shop) -> None:
    async with httpx.AsyncClient(base_url=shop.url, headers=KO_BROWSER) as browser:
        await browser.get("/")
        csrf = browser.cookies["pizzeria_csrf"]
        switched = await browser.post(
            "/language", data={"lang": "en", "next": "/login", "_csrf_token": csrf}
        )
        assert switched.status_code == 303 and switched.headers["location"] == "/login"
        assert browser.cookies["pizzeria_lang"] == "en"
        page = await browser.get("/login")
        assert lang_of(page.text) == "en" and "Sign in" in page.text
        # the switch offers the other language, in that language
        assert 'lang="ko"' in page.text and "한국어" in page.text


async def test_the_switch_refuses_to_redirect_elsewhere(shop: Shop) -> None:
    async with httpx.AsyncClient(base_url=shop.url) as browser:
        await browser.get("/")
        csrf = browser.cookies["pizzeria_csrf"]
        switched = await browser.post(
            "/language",
            data={"lang": "ko", "next": "//evil.example/", "_csrf_token": csrf},
        )
        assert switched.headers["location"] == "/"


async def test_a_signed_in_users_choice_follows_them_to_another_browser(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    customer = await new_customer(client)
    async with httpx.AsyncClient(base_url=shop.url, headers=EN_BROWSER) as laptop:
        csrf = await browser_session(laptop, customer["email"])
        await laptop.post("/language", data={"lang": "ko", "next": "/", "_csrf_token": csrf})
    # another device: an English browser with an English cookie, same account
    async with httpx.AsyncClient(
        base_url=shop.url, headers=EN_BROWSER, cookies={"pizzeria_lang": "en"}
    ) as phone:
        before = await phone.get("/orders", follow_redirects=True)
        assert lang_of(before.text) == "en"  # not signed in yet: the cookie decides
        await browser_session(phone, customer["email"])
        page = await phone.get("/orders")
        assert lang_of(page.text) == "ko" and "주문 내역" in page.text


async def test_form_errors_are_in_the_visitors_language(shop: Shop) -> None:
    async with httpx.AsyncClient(base_url=shop.url, headers=KO_BROWSER) as browser:
        await browser.get("/signup")
        csrf = browser.cookies["pizzeria_csrf"]
        page = await browser.post(
            "/signup",
            data={"name": "", "email": "nope", "password": "short", "_csrf_token": csrf},
        )
        assert page.status_code == 422
        assert "이름을 입력해 주세요." in page.text
        assert "올바른 이메일 주소를 입력해 주세요." in page.text
        assert "12자 이상 입력해 주세요." in page.text
        assert 'value="nope"' in page.text  # what was typed is kept


async def test_order_page_in_korean_shows_won_and_seoul_time(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    customer = await new_customer(client)
    placed = await client.post(
        "/api/orders", json=order_body(card=DECLINED_CARD), headers=auth(customer)
    )
    order_id = placed.json()["id"]
    view = await wait_for_status(client, customer, order_id, "payment_failed")
    async with httpx.AsyncClient(base_url=shop.url, headers=KO_BROWSER) as browser:
        await browser_session(browser, customer["email"])
        page = await browser.get(f"/orders/{order_id}")
    assert "결제에 실패했어요: 카드 결제가 거절됐어요." in page.text
    assert "주문 접수" in page.text
    # the state "Placed" is not the orders list's "Ordered on" column (both read 주문일)
    assert "<strong>주문됨</strong>" in page.text
    total = view["totalAmount"]
    assert f"₩{total:,}" in page.text
    # the timeline shows the shop's zone (Asia/Seoul, UTC+9), not UTC
    from datetime import datetime
    from zoneinfo import ZoneInfo

    placed_at = datetime.fromisoformat(view["timeline"][0]["at"])
    seoul = placed_at.astimezone(ZoneInfo("Asia/Seoul")).strftime("%H:%M:%S")
    assert f">{seoul}</time>" in page.text


async def test_api_errors_stay_english_with_a_stable_code(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    bad = await client.post(
        "/api/orders", json=order_body(address="   "), headers={**auth(customer), **KO_BROWSER}
    )
    assert bad.status_code == 422
    body = bad.json()
    assert body["code"] == "invalid_input"
    assert {"field": "address", "message": "Tell us where to deliver."} in body["errors"]
    missing = await client.get(
        "/api/orders/00000000-0000-0000-0000-000000000000", headers=auth(customer)
    )
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert missing.json()["detail"] == "order not found"
    async with httpx.AsyncClient(base_url=str(client.base_url)) as browser:
        await browser_session(browser, customer["email"])
        page = await browser.get("/orders/00000000-0000-0000-0000-000000000000")
    assert page.status_code == 404
    assert '<p id="error-message">Order not found</p>' in page.text, "a sentence on a page"
    anonymous = await client.get("/api/orders", headers=KO_BROWSER)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    malformed = await client.post("/api/orders", content=b"{", headers=auth(customer))
    assert malformed.json()["code"] in {"invalid_input", "bad_request"}
    nowhere = await client.get("/api/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["code"] == "not_found"


@pytest.mark.parametrize("headers", [KO_BROWSER, EN_BROWSER], ids=["ko", "en"])
async def test_the_refund_csv_opens_in_excel_and_every_cell_is_formula_safe(
    client: httpx.AsyncClient, shop: Shop, headers: dict[str, str]
) -> None:
    # an admin's label that a spreadsheet would run, and a customer's text that would too
    code = f"f{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=shop.url, headers=headers) as admin:
        csrf = await browser_session(admin, await create_user(shop.env, "admin"))
        saved = await admin.post(
            "/admin/reasons",
            data={
                "code": code,
                "label": '=HYPERLINK("http://x","맛이 이상해요")',
                "position": "5",
                "active": "1",
                "_csrf_token": csrf,
            },
        )
        assert saved.status_code == 303, saved.text
    staff = await staff_headers(client, shop.env)
    customer = await new_customer(client, name="김피자")
    order = await delivered_order(client, customer, staff, with_coupon=False)
    marker = uuid.uuid4().hex[:10]
    filed = await client.post(
        "/api/refunds",
        json={"orderId": order["id"], "reasonCode": code, "reason": f"@SUM(1) 너무 짜요 {marker}"},
        headers=auth(customer),
    )
    assert filed.status_code == 201, filed.text

    async with httpx.AsyncClient(base_url=shop.url, headers=headers) as browser:
        await browser_session(browser, await create_user(shop.env, "staff"))
        response = await browser.get("/staff/refunds/export.csv", params={"q": marker})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "charset=utf-8" in response.headers["content-type"]
    assert response.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads Korean
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    header, row = rows[0], rows[1]
    assert len(rows) == 2
    assert header[0] == ("환불 번호" if headers is KO_BROWSER else "Refund ID")
    cells = dict(zip(header, row, strict=True))
    label = cells["사유" if headers is KO_BROWSER else "Reason"]
    text = cells["내용" if headers is KO_BROWSER else "Text"]
    assert label == "'" + '=HYPERLINK("http://x","맛이 이상해요")'
    assert text.startswith("'@SUM(1) 너무 짜요")
    amount = cells["금액" if headers is KO_BROWSER else "Amount"]
    assert amount == str(order["totalAmount"])  # won: no decimals
    assert not any(cell[:1] in "=+-@\t\r" for r in rows for cell in r)


async def test_pages_that_do_not_exist_answer_in_the_visitors_language(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/no-such-page", headers=KO_BROWSER)
    assert page.status_code == 404
    assert lang_of(page.text) == "ko" and "페이지를 찾을 수 없어요." in page.text
    english = await client.get("/no-such-page", headers=EN_BROWSER)
    assert lang_of(english.text) == "en" and "We could not find that page." in english.text


async def test_a_language_picked_before_signing_in_is_kept(shop: Shop) -> None:
    """Signing up without picking a language gives the account none (it follows the
    browser), so a pick made later while signed out still holds after signing in."""
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    async with httpx.AsyncClient(base_url=shop.url, headers=EN_BROWSER) as browser:
        await browser.get("/signup")
        form = {"name": "Min", "email": email, "password": "pizza-demo-1234"}
        signed_up = await browser.post(
            "/signup", data={**form, "_csrf_token": browser.cookies["pizzeria_csrf"]}
        )
        assert signed_up.status_code == 303, signed_up.text
        assert lang_of((await browser.get("/orders")).text) == "en"
        out = await browser.post("/logout", data={"_csrf_token": browser.cookies["pizzeria_csrf"]})
        assert out.status_code == 303, out.text
        await browser.get("/login")
        csrf = browser.cookies["pizzeria_csrf"]
        await browser.post("/language", data={"lang": "ko", "next": "/login", "_csrf_token": csrf})
        await browser.get("/login")
        signed_in = await browser.post(
            "/login",
            data={
                "email": email,
                "password": form["password"],
                "next": "/",
                "_csrf_token": browser.cookies["pizzeria_csrf"],
            },
        )
        assert signed_in.status_code == 303, signed_in.text
        page = await browser.get("/orders")
        assert lang_of(page.text) == "ko" and "주문 내역" in page.text
