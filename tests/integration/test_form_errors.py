"""Every HTML form a use case refuses comes back the same way (``app.platform.forms``):
each message next to its field, what was typed kept (never a secret), the refusal's
status; the JSON API names the same fields in camelCase."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import service as accounts
from app.accounts.models import Role
from tests.support import webapp
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
