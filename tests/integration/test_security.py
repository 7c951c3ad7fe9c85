"""Sessions, CSRF, rate limits, tokens, headers and the audit trail (OWASP ASVS L2 bits)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support.api import (
    PASSWORD,
    auth,
    browser_session,
    create_user,
    new_customer,
    paid_order,
    staff_headers,
)
from tests.support.processes import Shop, extra_web, free_port, spawn, stop, wait_http

SESSION = "pizzeria_session"


async def test_signing_in_issues_a_new_session_id_and_keeps_the_basket(
    shop: Shop, client: httpx.AsyncClient
) -> None:
    customer = await new_customer(client)
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as browser:
        await browser.get("/login")
        csrf = browser.cookies["pizzeria_csrf"]
        await browser.post("/basket/add", data={"pizza_id": "2", "_csrf_token": csrf})
        before = browser.cookies[SESSION]
        await browser.post(
            "/login", data={"email": customer["email"], "password": PASSWORD, "_csrf_token": csrf}
        )
        after = browser.cookies[SESSION]
        assert after != before, "the visitor's session id must not survive sign-in"
        checkout = await browser.get("/checkout")
        assert checkout.status_code == 200 and "Marinara" in checkout.text

    async with httpx.AsyncClient(base_url=shop.url, timeout=20, cookies={SESSION: before}) as old:
        assert (await old.get("/checkout")).status_code == 303, "the old id is dead"


async def test_signing_out_kills_the_session_on_the_server(
    shop: Shop, client: httpx.AsyncClient
) -> None:
    customer = await new_customer(client)
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as browser:
        csrf = await browser_session(browser, customer["email"])
        session_id = browser.cookies[SESSION]
        assert (await browser.get("/orders")).status_code == 200
        assert (await browser.post("/logout", data={"_csrf_token": csrf})).status_code == 303
    async with httpx.AsyncClient(
        base_url=shop.url, timeout=20, cookies={SESSION: session_id}
    ) as stolen:
        response = await stolen.get("/orders")
        assert response.status_code == 303 and response.headers["location"].startswith("/login")


async def test_forms_and_htmx_requests_without_the_csrf_token_are_refused(
    shop: Shop, client: httpx.AsyncClient
) -> None:
    customer = await new_customer(client)
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as browser:
        csrf = await browser_session(browser, customer["email"])
        form = await browser.post("/basket/add", data={"pizza_id": "1"})
        assert form.status_code == 403
        htmx = await browser.post(
            "/basket/add",
            data={"pizza_id": "1"},
            headers={"HX-Request": "true", "X-CSRFToken": "forged" + csrf[6:]},
        )
        assert htmx.status_code == 403
        good = await browser.post(
            "/basket/add",
            data={"pizza_id": "1"},
            headers={"HX-Request": "true", "X-CSRFToken": csrf},
        )
        assert good.status_code == 200 and "Margherita" in good.text
        assert (await browser.post("/logout")).status_code == 403
        assert (await browser.get("/logout")).status_code == 405, "no state change on GET"


async def test_sign_in_rate_limits_are_shared_by_every_web_process(
    shop: Shop, client: httpx.AsyncClient
) -> None:
    customer = await new_customer(client)
    # The limiter counts in fixed windows: an hour-long one, entered well before its edge,
    # so the six guesses below cannot straddle two windows (a minute-long window did, in CI).
    window = 3600
    limits = {"RATE_LIMIT_SIGNIN_PER_ACCOUNT": "4", "RATE_LIMIT_WINDOW": str(window)}
    with extra_web(shop, 2, **limits) as [first, second]:
        if (left := window - time.time() % window) < 60:
            await asyncio.sleep(left)  # a precondition on the clock, not a wait for an effect
        statuses = []
        for attempt in range(6):
            url = (first, second)[attempt % 2]
            response = await client.post(
                f"{url}/api/auth/token",
                data={"username": customer["email"], "password": "wrong-guess-123"},
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert 1 <= int(response.headers["Retry-After"]) <= window + 1
        assert statuses == [401, 401, 401, 401, 429, 429]
        # Even the right password waits: the account is being guessed at.
        right = await client.post(
            f"{first}/api/auth/token", data={"username": customer["email"], "password": PASSWORD}
        )
        assert right.status_code == 429
        other = await new_customer(client)
        assert (
            await client.post(
                f"{second}/api/auth/token", data={"username": other["email"], "password": PASSWORD}
            )
        ).status_code == 200, "other accounts are not locked out"


async def test_order_placement_is_rate_limited_per_account(
    shop: Shop, client: httpx.AsyncClient
) -> None:
    from tests.support.api import order_body

    customer = await new_customer(client)
    with extra_web(shop, 1, RATE_LIMIT_ORDERS_PER_ACCOUNT="2", RATE_LIMIT_WINDOW="60") as [url]:
        codes = [
            (
                await client.post(f"{url}/api/orders", json=order_body(), headers=auth(customer))
            ).status_code
            for _ in range(3)
        ]
    assert codes == [201, 201, 429]


async def test_wrong_email_and_wrong_password_get_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    customer = await new_customer(client)
    wrong_password = await client.post(
        "/api/auth/token", data={"username": customer["email"], "password": "not-it-at-all-123"}
    )
    wrong_email = await client.post(
        "/api/auth/token", data={"username": "nobody-" + customer["email"], "password": PASSWORD}
    )
    assert wrong_password.status_code == wrong_email.status_code == 401
    assert wrong_password.json() == wrong_email.json()


async def test_common_passwords_are_refused(client: httpx.AsyncClient) -> None:
    for weak in ("password1234", "qwertyuiopas", "iloveyou2024!", "aaaaaaaaaaaaaaaa"):
        response = await client.post(
            "/api/auth/signup",
            json={"email": f"x{time.time_ns()}@example.com", "password": weak, "name": "X"},
        )
        assert response.status_code == 422, weak
        assert response.json()["errors"][0]["field"] == "password"


async def test_tokens_expired_tampered_or_older_than_a_password_change_are_refused(
    shop: Shop, client: httpx.AsyncClient
) -> None:
    import os

    customer = await new_customer(client)
    secret = os.environ["SECRET_KEY"]
    claims = jwt.decode(customer["token"], secret, algorithms=["HS256"])
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, secret, algorithm="HS256")
    forged = jwt.encode(
        {**claims, "role": "admin"}, "guessed-secret-" + "x" * 32, algorithm="HS256"
    )
    unsigned = jwt.encode({**claims, "role": "admin"}, None, algorithm="none")
    for token in (expired, forged, unsigned, customer["token"][:-3] + "abc"):
        response = await client.get("/api/orders", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token

    assert (await client.get("/api/orders", headers=auth(customer))).status_code == 200
    changed = await client.post(
        "/api/auth/password",
        json={"currentPassword": PASSWORD, "newPassword": "a-brand-new-secret-42"},
        headers=auth(customer),
    )
    assert changed.status_code == 204
    assert (await client.get("/api/orders", headers=auth(customer))).status_code == 401
    fresh = await client.post(
        "/api/auth/token", data={"username": customer["email"], "password": "a-brand-new-secret-42"}
    )
    new_token = fresh.json()["access_token"]
    assert (
        await client.get("/api/orders", headers={"Authorization": f"Bearer {new_token}"})
    ).status_code == 200


@pytest.mark.parametrize(
    "path", ["/", "/api/menu", "/static/css/app.css", "/no-such-page", "/health/live"]
)
async def test_security_headers_are_on_every_response(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert len(response.headers["x-request-id"]) == 16
    assert "strict-transport-security" not in response.headers, "HSTS only over HTTPS"


async def test_https_deployments_get_hsts_and_host_prefixed_secure_cookies(shop: Shop) -> None:
    with extra_web(shop, 1, PIZZERIA_HTTPS="1") as [url]:
        async with httpx.AsyncClient(base_url=url, timeout=20) as browser:
            response = await browser.get("/login")
            assert response.headers["strict-transport-security"].startswith("max-age=")
            cookies = response.headers.get_list("set-cookie")
            csrf = next(c for c in cookies if c.startswith("__Host-pizzeria_csrf="))
            assert "Secure" in csrf and "Path=/" in csrf and "Domain" not in csrf
            basket = await browser.post(
                "/basket/add",
                data={"pizza_id": "1", "_csrf_token": csrf.split(";")[0].split("=", 1)[1]},
                headers={"cookie": csrf.split(";")[0]},
            )
            session = next(
                c for c in basket.headers.get_list("set-cookie") if "pizzeria_session" in c
            )
            assert session.startswith("__Host-pizzeria_session=")
            assert "Secure" in session and "HttpOnly" in session and "SameSite=lax" in session


async def test_staff_actions_are_in_the_audit_trail_for_admins(
    shop: Shop, client: httpx.AsyncClient
) -> None:

    staff = await staff_headers(client, shop.env)
    customer = await new_customer(client)
    order = await paid_order(client, customer)
    delivery_id = order["delivery"]["id"]
    assert (
        await client.post(f"/api/deliveries/{delivery_id}/advance", headers=staff)
    ).status_code == 200

    admin_email = await create_user(shop.env, "admin")
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as admin:
        await browser_session(admin, admin_email)
        trail = await admin.get("/admin/audit")
        assert trail.status_code == 200
        # the trail names the order, not the delivery id fragment (issue 8)
        assert 'data-action="delivery.advance"' in trail.text
        assert f"#{order['id'][:8]}" in trail.text
    async with httpx.AsyncClient(base_url=shop.url, timeout=20) as other:
        await browser_session(other, customer["email"])
        assert (await other.get("/admin/audit")).status_code == 403


async def test_unexpected_errors_leak_nothing_and_carry_the_request_id(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/auth/token",
        content=b"\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code < 500 or "requestId" in response.json()
    assert "Traceback" not in response.text and "sqlalchemy" not in response.text.lower()


@pytest.mark.parametrize("reached_through", ["tcp", "unix socket"])
async def test_an_unreachable_database_answers_503_with_retry_after(
    shop: Shop, client: httpx.AsyncClient, reached_through: str, tmp_path: Path
) -> None:
    """Nothing listening on the port (refused), or, as the embedded PostgreSQL of
    ``pizzeria up`` while it is stopped or restarting, no socket file (not found)."""
    customer = await new_customer(client)
    dead = (
        f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
        if reached_through == "tcp"
        else f"postgresql+asyncpg://postgres@/nowhere?host={tmp_path}"
    )
    port = free_port()
    process = spawn(["serve", "--port", str(port)], {**shop.env, "DATABASE_URL": dead})
    try:
        wait_http(f"http://127.0.0.1:{port}/health/live", process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as broken:
            ready = await broken.get("/health/ready")
            assert ready.status_code == 503 and "Retry-After" in ready.headers
            api = await broken.get("/api/orders", headers=auth(customer))
            assert api.status_code == 503 and int(api.headers["Retry-After"]) >= 1
            assert "detail" in api.json()
            page = await broken.get("/")
            assert page.status_code == 503 and "try again" in page.text
    finally:
        stop([process])


async def test_a_client_cannot_pick_its_rate_limit_key_with_x_forwarded_for(
    shop: Shop,
) -> None:
    """The real server process with default settings (no trusted proxy): loopback clients
    sending made-up ``X-Forwarded-For`` addresses are still one client."""
    with extra_web(shop, 1, RATE_LIMIT_SIGNUP_PER_CLIENT="3") as [url]:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            codes = []
            for i in range(4):
                response = await client.post(
                    "/api/auth/signup",
                    json={
                        "email": f"xff-{i}-{time.time_ns()}@example.com",
                        "password": PASSWORD,
                        "name": "Spoofer",
                    },
                    headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
                )
                codes.append(response.status_code)
    # One client, whatever the header says: at most three sign-ups (fewer if this window
    # already counted some from 127.0.0.1), never four new "clients".
    assert codes.count(201) <= 3 and codes[-1] == 429, codes
