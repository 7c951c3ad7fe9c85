"""Refunds end to end through the real processes: FR8 to FR12, NFR1.2, NFR2.3."""

from __future__ import annotations

import asyncio
import html
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.coupon import tasks as coupon_tasks
from tests.support.api import (
    auth,
    browser_session,
    create_user,
    delivered_order,
    file_refund,
    new_customer,
    wait_for,
)
from tests.support.processes import Shop
from tests.support.quiet import wait_for_queued_job


async def _charge_operations(
    sandbox: httpx.AsyncClient, amount: int, since: int
) -> list[list[str]]:
    charges = (await sandbox.get("/sandbox/payments/charges")).json()
    return [c["operations"] for c in charges[since:] if c["amount"] == amount]


async def test_reasons_are_listed_for_customers(client: httpx.AsyncClient) -> None:
    customer = await new_customer(client)
    reasons = (await client.get("/api/refund-reasons", headers=auth(customer))).json()
    assert [r["code"] for r in reasons] == [
        "wrong_pizza",
        "missing_item",
        "cold_or_late",
        "quality",
        "not_delivered",
        "other",
    ]
    assert {r["code"]: r["label"] for r in reasons}["other"] == "Other"


async def test_a_refund_revokes_the_coupon_and_pays_back_once_the_return_is_in(
    client: httpx.AsyncClient, staff: dict[str, str], sandbox: httpx.AsyncClient
) -> None:
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff)
    charges_before = len((await sandbox.get("/sandbox/payments/charges")).json()) - 1

    filed = await file_refund(
        client, customer, order["id"], "wrong_pizza", "Ordered Diavola, got Marinara"
    )
    assert filed.status_code == 201, filed.text
    refund = filed.json()
    assert refund["status"] == "requested" and refund["amount"] == order["totalAmount"]
    assert refund["reasonLabel"] == "Wrong pizza"  # as GET answers it (it was null)
    assert (
        refund["reasonCode"] == "wrong_pizza"
        and refund["reason"] == "Ordered Diavola, got Marinara"
    )

    revoked = await wait_for(
        client,
        customer,
        order["id"],
        lambda v: v["coupon"]["status"] == "revoked",
        "a revoked coupon",
    )
    assert revoked["delivery"]["status"] == "return_requested"
    assert revoked["refund"] == {
        "id": refund["id"],
        "status": "requested",
        "reasonCode": "wrong_pizza",
        "reasonLabel": "Wrong pizza",
        "reason": "Ordered Diavola, got Marinara",
        "amount": order["totalAmount"],
        "createdAt": revoked["refund"]["createdAt"],
    }
    second = await file_refund(client, customer, order["id"])
    assert second.status_code == 409 and "already" in second.json()["detail"]

    done = await client.post(
        f"/api/deliveries/{order['delivery']['id']}/return/complete", headers=staff
    )
    assert done.status_code == 200 and done.json()["status"] == "returned"
    refunded = await wait_for(
        client,
        customer,
        order["id"],
        lambda v: v["status"] == "refunded" and v["refund"]["status"] == "completed",
        "refunded",
    )
    assert refunded["payment"]["status"] == "refunded"
    assert refunded["refund"]["status"] == "completed"
    mine = (await client.get(f"/api/refunds/{refund['id']}", headers=auth(customer))).json()
    assert mine["status"] == "completed" and mine["reasonLabel"] == "Wrong pizza"
    assert ["capture", "refund"] in await _charge_operations(
        sandbox, order["totalAmount"], charges_before
    )


async def test_cancelling_the_return_cancels_the_refund_and_gives_the_coupon_back(
    client: httpx.AsyncClient, staff: dict[str, str], sandbox: httpx.AsyncClient
) -> None:
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff)
    refund = (await file_refund(client, customer, order["id"], "other", "Changed my mind")).json()
    await wait_for(
        client, customer, order["id"], lambda v: v["coupon"]["status"] == "revoked", "revoke"
    )

    cancelled = await client.post(
        f"/api/deliveries/{order['delivery']['id']}/return/cancel", headers=staff
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "delivered"
    view = await wait_for(
        client,
        customer,
        order["id"],
        lambda v: v["coupon"]["status"] == "issued",
        "a reinstated coupon",
    )
    assert view["status"] == "fulfilled" and view["refund"]["status"] == "cancelled"
    assert view["payment"]["status"] == "captured", "no money moved"
    mine = (await client.get(f"/api/refunds/{refund['id']}", headers=auth(customer))).json()
    assert mine["status"] == "cancelled" and mine["cancelledBy"] == "staff"
    again = await client.post(
        f"/api/deliveries/{order['delivery']['id']}/return/cancel", headers=staff
    )
    assert again.status_code == 409


async def test_the_customer_can_withdraw_and_others_see_nothing(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    customer, stranger = await new_customer(client), await new_customer(client)
    order = await delivered_order(client, customer, staff, with_coupon=False)
    assert (await file_refund(client, stranger, order["id"])).status_code == 404
    refund = (await file_refund(client, customer, order["id"])).json()
    assert (
        await client.get(f"/api/refunds/{refund['id']}", headers=auth(stranger))
    ).status_code == 404
    assert (
        await client.post(f"/api/refunds/{refund['id']}/cancel", headers=auth(stranger))
    ).status_code == 404
    assert (await client.get("/api/refunds", headers=auth(stranger))).json() == []
    withdrawn = await client.post(f"/api/refunds/{refund['id']}/cancel", headers=auth(customer))
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "cancelled"
    staff_view = (await client.get(f"/api/refunds/{refund['id']}", headers=staff)).json()
    assert staff_view["cancelledBy"] == "customer"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"reasonCode": "teleported"}, 422, "reasonCode"),
        ({"reasonCode": "other", "reason": "   "}, 422, "reason"),
        ({"reasonCode": "quality", "reason": "x" * 1001}, 422, "reason"),
        ({"reasonCode": ""}, 422, "reasonCode"),
        # an override would make staff read the rest backwards (app.platform.text.plain)
        ({"reasonCode": "other", "reason": "cold \u202edesrever"}, 422, "reason"),
    ],
)
async def test_bad_refund_input_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, field: str
) -> None:
    customer = await new_customer(client)
    response = await client.post(
        "/api/refunds",
        json={"orderId": "00000000-0000-0000-0000-000000000000", **body},
        headers=auth(customer),
    )
    assert response.status_code == status, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert f"{field}: " in response.json()["detail"], "the detail names it as the errors do"


async def test_an_order_not_yet_delivered_cannot_be_refunded(client: httpx.AsyncClient) -> None:
    from tests.support.api import paid_order

    customer = await new_customer(client)
    order = await paid_order(client, customer)
    refused = await file_refund(client, customer, order["id"])
    assert refused.status_code == 409 and "delivered" in refused.json()["detail"]


async def test_revoke_catches_up_when_the_coupon_worker_returns(
    client: httpx.AsyncClient, staff: dict[str, str], shop: Shop
) -> None:
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff)
    shop.stop_worker("coupon")
    try:
        filed = await file_refund(client, customer, order["id"])
        assert filed.status_code == 201, "refunds are taken while the coupon worker is down"
        await wait_for_queued_job(shop.env["REDIS_URL"], "coupon", coupon_tasks.REVOKE)
        view = (await client.get(f"/api/orders/{order['id']}", headers=auth(customer))).json()
        assert view["coupon"]["status"] == "issued"
    finally:
        shop.start_worker("coupon")
    await wait_for(
        client,
        customer,
        order["id"],
        lambda v: v["coupon"]["status"] == "revoked",
        "the revoke",
        20,
    )


async def test_staff_lookup_filters_counts_and_exports(
    client: httpx.AsyncClient, staff: dict[str, str], shop: Shop
) -> None:
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff, with_coupon=False)
    marker = "soggy-crust-7431"
    refund = (
        await file_refund(client, customer, order["id"], "quality", f"The base was {marker}")
    ).json()

    api = await client.get(
        "/api/refunds", params={"reasonCode": "quality", "q": marker}, headers=staff
    )
    assert [r["id"] for r in api.json()] == [refund["id"]]
    assert (
        await client.get("/api/refunds", params={"reasonCode": "other", "q": marker}, headers=staff)
    ).json() == []

    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as browser:
        staff_email = await create_user(shop.env, "staff")
        await browser_session(browser, staff_email)
        page = await browser.get("/staff/refunds", params={"reason": "quality", "q": marker})
        assert page.status_code == 200 and refund["id"] in page.text
        assert 'data-reason="quality" data-count="1"' in page.text
        export = await browser.get("/staff/refunds/export.csv", params={"q": marker})
        assert export.headers["content-type"] == "text/csv; charset=utf-8"
        lines = export.text.strip().splitlines()
        assert len(lines) == 2 and refund["id"] in lines[1] and marker in lines[1]
        customer_page = await browser.get(f"/staff/refunds/{refund['id']}")
        assert customer_page.status_code == 200 and "Refund requested" in customer_page.text
        # staff's page, not the customer's: no Withdraw, no link to the customer's order
        # page (which is not staff's), the words named as the customer's
        assert 'id="withdraw-refund"' not in customer_page.text
        assert f'href="/orders/{order["id"]}"' not in customer_page.text
        shown = html.unescape(customer_page.text)
        assert "The customer's words" in shown and marker in shown

        backwards = {"from": "2026-12-02", "to": "2026-12-01"}
        refused = await browser.get("/staff/refunds", params=backwards)
        assert refused.status_code == 422
        assert 'id="to-error"' in refused.text and "pick a later day" in refused.text
        assert 'value="2026-12-02"' in refused.text, "what was picked stays"
        korean = await browser.get(
            "/staff/refunds", params=backwards, headers={"Accept-Language": "ko-KR,ko;q=0.9"}
        )
        assert korean.status_code == 422 and "더 늦은 날짜를 골라 주세요" in korean.text


async def test_the_api_looks_refunds_up_by_day_or_instant_and_names_a_bad_bound(
    client: httpx.AsyncClient, staff: dict[str, str], shop: Shop
) -> None:
    """``from`` and ``to`` take a day in the shop's time zone (``to`` includes it, as on
    the staff lookup page) or an RFC 3339 instant; anything else is a 422 naming the
    parameter as the caller sent it."""
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff, with_coupon=False)
    marker = f"burnt-edge-{uuid.uuid4().hex[:8]}"
    refund = (await file_refund(client, customer, order["id"], "quality", f"Edge {marker}")).json()
    created = datetime.fromisoformat(refund["createdAt"])
    day = created.astimezone(ZoneInfo(shop.env.get("PIZZERIA_TIMEZONE", "Asia/Seoul"))).date()

    async def found(**bounds: str) -> list[str]:
        answer = await client.get("/api/refunds", params={"q": marker, **bounds}, headers=staff)
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()]

    assert await found(**{"from": str(day), "to": str(day)}) == [refund["id"]], "that day"
    assert await found(to=str(day - timedelta(days=1))) == []
    assert await found(**{"from": str(day + timedelta(days=1))}) == []
    second = timedelta(seconds=1)
    around = {"from": (created - second).isoformat(), "to": (created + second).isoformat()}
    assert await found(**around) == [refund["id"]]
    assert await found(to=(created - second).isoformat()) == []

    for params, field in [
        ({"to": "0.5"}, "to"),  # not taken for a Unix time
        ({"from": "banana"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": str(day), "to": str(day - timedelta(days=1))}, "to"),
        ({"reasonCode": "x" * 41}, "reasonCode"),  # Litestar's own check, named as sent
    ]:
        refused = await client.get("/api/refunds", params=params, headers=staff)
        assert refused.status_code == 422, (params, refused.text)
        body = refused.json()
        assert [e["field"] for e in body["errors"]] == [field], body
        assert body["detail"].startswith(f"{field}: "), body


async def _return_pickup(sandbox: httpx.AsyncClient, delivery_id: str) -> str:
    """The partner's pickup for the return trip, once our worker has asked for it."""
    async with asyncio.timeout(15):
        while True:
            pickups = (
                await sandbox.get(
                    "/sandbox/courier/pickups", params={"reference": f"{delivery_id}:return"}
                )
            ).json()
            if pickups:
                return str(pickups[0]["id"])
            await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("partner_says", "refund_ends"), [("cancelled", "cancelled"), ("delivered", "completed")]
)
async def test_the_partner_settles_the_return_trip(
    client: httpx.AsyncClient,
    staff: dict[str, str],
    sandbox: httpx.AsyncClient,
    partner_says: str,
    refund_ends: str,
) -> None:
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff)
    refund = (await file_refund(client, customer, order["id"], "cold_or_late")).json()
    pickup = await _return_pickup(sandbox, order["delivery"]["id"])

    sent = await sandbox.post(
        f"/sandbox/courier/pickups/{pickup}/events", json={"type": partner_says}
    )
    assert sent.json()["delivered"] is True and sent.json()["status"] == 200

    view = await wait_for(
        client,
        customer,
        order["id"],
        lambda v: (
            v["refund"]["status"] == refund_ends
            and v["delivery"]["status"]
            == ("delivered" if refund_ends == "cancelled" else "returned")
        ),
        f"the refund {refund_ends} and the delivery following it",
    )
    mine = (await client.get(f"/api/refunds/{refund['id']}", headers=auth(customer))).json()
    if refund_ends == "cancelled":  # FR11 by the partner: back to delivered, coupon back
        assert mine["cancelledBy"] == "partner" and view["delivery"]["status"] == "delivered"
        await wait_for(
            client, customer, order["id"], lambda v: v["coupon"]["status"] == "issued", "coupon"
        )
    else:
        assert view["delivery"]["status"] == "returned"
        await wait_for(
            client, customer, order["id"], lambda v: v["status"] == "refunded", "refunded"
        )


async def test_an_admin_edits_the_refund_reasons(client: httpx.AsyncClient, shop: Shop) -> None:
    import uuid

    admin_email = await create_user(shop.env, "admin")
    code = f"burnt_{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as admin:
        csrf = await browser_session(admin, admin_email)
        bad = await admin.post(
            "/admin/reasons", data={"code": "no spaces!", "label": "", "_csrf_token": csrf}
        )
        assert bad.status_code == 422 and "no spaces!" in bad.text
        for position in ("99999999999999999999", "abc", "-1"):  # the first was a 500
            refused = await admin.post(
                "/admin/reasons",
                data={"code": code, "label": "Burnt \u202ebase", "position": position}
                | {"_csrf_token": csrf},
            )
            assert refused.status_code == 422, refused.text
            assert 'id="position-error"' in refused.text and f'value="{position}"' in refused.text
            assert "Give the reason a label" in refused.text  # no direction controls either
        saved = await admin.post(
            "/admin/reasons",
            data={
                "code": code,
                "label": "Burnt base",
                "position": "5",
                "active": "1",
                "_csrf_token": csrf,
            },
        )
        assert saved.status_code == 303
    customer = await new_customer(client)
    reasons = (await client.get("/api/refund-reasons", headers=auth(customer))).json()
    assert reasons[0] == {"code": code, "label": "Burnt base", "requiresText": False}
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as admin:
        csrf = await browser_session(admin, admin_email)
        await admin.post(
            "/admin/reasons",
            data={"code": code, "label": "Burnt base", "position": "5", "_csrf_token": csrf},
        )
    reasons = (await client.get("/api/refund-reasons", headers=auth(customer))).json()
    assert code not in [r["code"] for r in reasons], "an inactive reason is no longer offered"
    # the trail says who switched it off, not just its label again
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as admin:
        await browser_session(admin, admin_email)
        trail = (await admin.get("/admin/audit")).text
    rows = [row for row in trail.split("<tr") if f"reason:{code}" in row]
    assert len(rows) == 2, rows
    assert "active=True → False" in rows[0] and "label=" not in rows[0], rows[0]
    assert "new=yes" in rows[1] and "position=5" in rows[1], rows[1]


async def test_a_refund_filed_again_after_a_withdrawn_one_is_shown_and_collected(
    client: httpx.AsyncClient, staff: dict[str, str], sandbox: httpx.AsyncClient
) -> None:
    """Issue 9 #8 and #9 through the real processes: the order page shows the second
    refund, the partner gets a pickup for it, and once the pizzas are back no rider
    stays booked at the partner."""
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff)
    delivery_id = order["delivery"]["id"]
    first = (await file_refund(client, customer, order["id"], "other", "Changed my mind")).json()
    await _return_pickup(sandbox, delivery_id)
    withdrawn = await client.post(f"/api/refunds/{first['id']}/cancel", headers=auth(customer))
    assert withdrawn.status_code == 200
    await wait_for(
        client, customer, order["id"], lambda v: v["coupon"]["status"] == "issued", "coupon back"
    )

    again = await file_refund(client, customer, order["id"], "quality", "Burnt after all")
    assert again.status_code == 201, again.text
    second = again.json()
    view = await wait_for(
        client,
        customer,
        order["id"],
        lambda v: v["refund"]["id"] == second["id"] and v["coupon"]["status"] == "revoked",
        "the second refund on the order page",
    )
    assert view["refund"]["status"] == "requested"

    async def partner_statuses() -> list[str]:
        found = await sandbox.get(
            "/sandbox/courier/pickups", params={"reference": f"{delivery_id}:return"}
        )
        return sorted(p["status"] for p in found.json())

    async with asyncio.timeout(20):
        while True:
            statuses = await partner_statuses()
            if len(statuses) >= 2 and "cancelled" in statuses:
                break
            await asyncio.sleep(0.2)
    assert statuses in (["cancelled", "requested"], ["assigned", "cancelled"])

    done = await client.post(f"/api/deliveries/{delivery_id}/return/complete", headers=staff)
    assert done.status_code == 200
    await wait_for(
        client,
        customer,
        order["id"],
        lambda v: v["status"] == "refunded" and v["refund"]["id"] == second["id"],
        "refunded",
    )
    async with asyncio.timeout(20):
        while True:
            if not set(await partner_statuses()) & {"requested", "assigned"}:
                break
            await asyncio.sleep(0.2)


async def test_an_unsearchable_filter_is_named_in_the_answer(client: httpx.AsyncClient) -> None:
    headers = auth(await new_customer(client))
    response = await client.get(
        "/api/refunds", params={"reasonCode": "nul\x00here", "q": "fine"}, headers=headers
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["reasonCode"]


async def test_a_lookup_link_with_a_bound_that_is_no_day_says_so(shop: Shop) -> None:
    """The date fields send a day or nothing; a hand-typed link with anything else is
    told so next to the field (and the export refuses it) instead of quietly searching
    without that bound."""
    async with httpx.AsyncClient(base_url=shop.url) as browser:
        await browser_session(browser, await create_user(shop.env, "staff"))
        page = await browser.get("/staff/refunds", params={"from": "garbage", "to": "2026-13-45"})
        assert page.status_code == 422, page.text
        assert 'id="from-error"' in page.text and 'id="to-error"' in page.text
        assert page.text.count("Pick a day (YYYY-MM-DD).") == 2
        export = await browser.get("/staff/refunds/export.csv", params={"from": "garbage"})
        assert export.status_code == 422, export.text
        backwards = {"from": "2026-12-10", "to": "2026-12-01"}  # an empty file before
        assert (await browser.get("/staff/refunds", params=backwards)).status_code == 422
        refused = await browser.get("/staff/refunds/export.csv", params=backwards)
        assert refused.status_code == 422 and "“To” is before “From”" in refused.text
        fine = await browser.get("/staff/refunds", params={"from": "2026-11-01"})
        assert fine.status_code == 200 and "from-error" not in fine.text


async def test_a_refunded_orders_page_says_so_in_korean_without_a_rider_or_a_coupon_to_use(
    client: httpx.AsyncClient, staff: dict[str, str], shop: Shop
) -> None:
    """The refund's state in the visitor's language (it was lower-cased before it was
    translated: "환불 requested"), no "Your rider" once the pizzas are delivered and being
    returned, and a revoked coupon not offered for the next order."""
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff)
    assert (
        await file_refund(client, customer, order["id"], "wrong_pizza", "Diavola")
    ).status_code == 201
    await wait_for(
        client, customer, order["id"], lambda v: v["coupon"]["status"] == "revoked", "revoke"
    )
    korean = {"Accept-Language": "ko-KR,ko;q=0.9"}
    async with httpx.AsyncClient(base_url=shop.url, headers=korean) as browser:
        await browser_session(browser, customer["email"])

        async def refund_line() -> tuple[str, str]:
            page = (await browser.get(f"/orders/{order['id']}")).text
            line = page.split('id="order-refund"', 1)[1].split(">", 1)[1].split("</p>", 1)[0]
            assert 'id="rider-status"' not in page
            coupon = page.split('id="order-coupon"', 1)[1].split("</div>", 1)[0]
            return line, coupon

        line, coupon = await refund_line()
        assert "요청됨" in line and "requested" not in line
        # on hold while the refund is only asked for, withdrawn once it is paid back
        assert "확인하는 동안 쓸 수 없어요" in coupon and "할인받으세요" not in coupon

        done = await client.post(
            f"/api/deliveries/{order['delivery']['id']}/return/complete", headers=staff
        )
        assert done.status_code == 200, done.text
        await wait_for(client, customer, order["id"], lambda v: v["status"] == "refunded", "refund")
        line, coupon = await refund_line()
        assert "완료" in line and "completed" not in line
        assert "회수됐어요" in coupon and "할인받으세요" not in coupon


async def test_a_withdrawal_refused_is_told_on_the_refund_page_it_returns_to(
    client: httpx.AsyncClient, staff: dict[str, str], shop: Shop
) -> None:
    """Pressed on a page that was out of date (here: the refund already withdrawn): the
    browser is sent back to the refund's page, which says why once, so a reload there
    sends nothing again (it stayed on ``…/cancel`` before)."""
    customer = await new_customer(client)
    order = await delivered_order(client, customer, staff, with_coupon=False)
    refund = (await file_refund(client, customer, order["id"], "other", "changed mind")).json()
    page = f"/refunds/{refund['id']}"

    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as browser:
        csrf = await browser_session(browser, customer["email"])
        for _ in range(2):
            sent = await browser.post(f"{page}/cancel", data={"_csrf_token": csrf})
            assert sent.status_code == 303 and sent.headers["location"] == page, sent.text

        refused = '<p class="error banner" role="alert">'  # the page's own, not the layout's
        told = await browser.get(page)
        assert told.status_code == 200
        assert refused in told.text
        again = await browser.get(page)
        assert refused not in again.text, "said once"
