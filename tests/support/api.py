"""A small JSON API client for tests: sign up, get a token, place orders, wait for states."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from typing import Any

import httpx

PASSWORD = "correct-horse-battery"
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


async def new_customer(client: httpx.AsyncClient, name: str = "Test Customer") -> dict[str, str]:
    """Sign up a fresh customer and return ``{"email", "token"}`` with auth headers set."""
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    response = await client.post(
        "/api/auth/signup", json={"email": email, "password": PASSWORD, "name": name}
    )
    assert response.status_code == 201, response.text
    token = await client.post("/api/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"email": email, "token": token.json()["access_token"], "id": response.json()["id"]}


def auth(customer: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {customer['token']}"}


def order_body(card: str = GOOD_CARD, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": [{"pizzaId": 1, "qty": 2}, {"pizzaId": 3, "qty": 1}],
        "address": "Via Roma 1, Napoli",
        "cardNumber": card,
    }
    body.update(overrides)
    return body


async def file_refund(
    client: httpx.AsyncClient,
    customer: dict[str, str],
    order_id: str,
    code: str = "cold_or_late",
    text: str = "",
) -> httpx.Response:
    """Ask for a refund of ``order_id`` as ``customer`` (the answer as it came)."""
    return await client.post(
        "/api/refunds",
        json={"orderId": order_id, "reasonCode": code, "reason": text},
        headers=auth(customer),
    )


async def wait_for_status(
    client: httpx.AsyncClient,
    customer: dict[str, str],
    order_id: str,
    status: str,
    timeout: float = 15.0,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    seen = None
    while asyncio.get_running_loop().time() < deadline:
        response = await client.get(f"/api/orders/{order_id}", headers=auth(customer))
        seen = response.json()
        if seen.get("status") == status:
            return seen  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} never reached {status}; last seen {seen}")


async def create_user(shop_env: dict[str, str], role: str) -> str:
    """A user made with the real CLI, as an operator would; returns the email."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "app.cli",
            "user",
            "create",
            "--email",
            email,
            "--password",
            PASSWORD,
            "--role",
            role,
        ],
        check=True,
        env={**os.environ, **shop_env},
        capture_output=True,
    )
    return email


async def bearer(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    token = await client.post("/api/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def staff_headers(client: httpx.AsyncClient, shop_env: dict[str, str]) -> dict[str, str]:
    """A new staff member's bearer header."""
    return await bearer(client, await create_user(shop_env, "staff"))


async def wait_for(
    client: httpx.AsyncClient,
    customer: dict[str, str],
    order_id: str,
    predicate: Any,
    what: str,
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll the order view until ``predicate(view)`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    view: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        view = (await client.get(f"/api/orders/{order_id}", headers=auth(customer))).json()
        if predicate(view):
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} never got {what}; last seen {view}")


async def paid_order(
    client: httpx.AsyncClient, customer: dict[str, str], **body: Any
) -> dict[str, Any]:
    """Place an order and wait until its delivery exists (paid, kitchen ticket queued)."""
    response = await client.post("/api/orders", json=order_body(**body), headers=auth(customer))
    assert response.status_code == 201, response.text
    return await wait_for(
        client, customer, response.json()["id"], lambda v: v["delivery"] is not None, "a delivery"
    )


async def delivered_order(
    client: httpx.AsyncClient,
    customer: dict[str, str],
    staff: dict[str, str],
    *,
    with_coupon: bool = True,
) -> dict[str, Any]:
    """An order taken all the way to the customer's door (and its coupon issued)."""
    order = await paid_order(client, customer)
    for _ in range(3):  # preparing, baking, ready; the partner's rider does the rest
        moved = await client.post(
            f"/api/deliveries/{order['delivery']['id']}/advance", headers=staff
        )
        assert moved.status_code == 200, moved.text
    return await wait_for(
        client,
        customer,
        order["id"],
        lambda v: v["status"] == "fulfilled" and (v["coupon"] is not None or not with_coupon),
        "delivered",
        20,
    )


async def browser_session(client: httpx.AsyncClient, email: str) -> str:
    """Sign in through the HTML form like a browser; return the CSRF token for forms."""
    await client.get("/login")
    token = client.cookies["pizzeria_csrf"]
    response = await client.post(
        "/login", data={"email": email, "password": PASSWORD, "next": "/", "_csrf_token": token}
    )
    assert response.status_code == 303, response.text
    # Signing in binds a new CSRF token to the session (and hands it over in the cookie).
    bound = client.cookies["pizzeria_csrf"]
    assert bound != token, "sign-in must issue a new CSRF token"
    return bound


def new_customer_sync(client: httpx.Client, name: str = "Test Customer") -> dict[str, str]:
    """``new_customer`` for synchronous tests (Hypothesis drives sync test functions)."""
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    response = client.post(
        "/api/auth/signup", json={"email": email, "password": PASSWORD, "name": name}
    )
    assert response.status_code == 201, response.text
    token = client.post("/api/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"email": email, "token": token.json()["access_token"], "id": response.json()["id"]}


def browser_session_sync(client: httpx.Client, email: str) -> str:
    """``browser_session`` for synchronous tests: sign in through the HTML form; return the
    CSRF token for forms."""
    client.get("/login")
    token = client.cookies["pizzeria_csrf"]
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "next": "/", "_csrf_token": token}
    )
    assert response.status_code == 303, response.text
    # Signing in binds a new CSRF token to the session (and hands it over in the cookie).
    bound = client.cookies["pizzeria_csrf"]
    assert bound != token, "sign-in must issue a new CSRF token"
    return bound
