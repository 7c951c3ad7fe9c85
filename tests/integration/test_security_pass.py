"""Issue 12, the second security pass: each test here failed before its fix.

The web app runs inside the test process (``tests.support.webapp``) on the real test
database and Redis; peers get documentation addresses (203.0.113.x), so the client
address rules apply exactly as behind a real network.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from litestar import Litestar
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import service as accounts
from app.accounts.models import Role, User
from app.platform.settings import RateLimitSettings, get_settings
from tests.support import webapp
from tests.support.api import PASSWORD

SESSION = "pizzeria_session"
CSRF = "pizzeria_csrf"


@pytest.fixture
async def app(migrated_db: str, sandbox_url: str) -> AsyncIterator[Litestar]:
    async with webapp.running() as running:
        yield running


async def new_user(
    session_factory: async_sessionmaker[AsyncSession], role: Role = Role.customer
) -> str:
    email = f"{role.value}-{uuid.uuid4().hex[:10]}@example.com"
    async with session_factory() as session:
        await accounts.sign_up(session, email=email, password=PASSWORD, name="Tester", role=role)
    return email


async def token_for(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    response = await client.post("/api/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Sign in through the form; return the CSRF token the session is bound to."""
    await client.get("/login")
    response = await client.post(
        "/login",
        data={"email": email, "password": password, "_csrf_token": client.cookies[CSRF]},
    )
    assert response.status_code == 303, response.text
    return client.cookies[CSRF]


# -- secrets --------------------------------------------------------------------------


# -- the role is the account's ------------------------------------------------------------


async def test_a_token_minted_with_role_admin_gets_only_the_accounts_role(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with webapp.client(app) as api:
        token = await token_for(api, email)
        claims = jwt.decode(token, options={"verify_signature": False})
        forged = jwt.encode(
            {**claims, "role": "admin"}, get_settings().security.secret_key, algorithm="HS256"
        )
        response = await api.get("/api/deliveries", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 403


async def test_a_demoted_staff_member_loses_staff_rights_at_once(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory, Role.staff)
    async with webapp.client(app) as api, webapp.client(app) as browser:
        headers = {"Authorization": f"Bearer {await token_for(api, email)}"}
        await sign_in(browser, email)
        assert (await api.get("/api/deliveries", headers=headers)).status_code == 200
        assert (await browser.get("/staff/board")).status_code == 200
        async with session_factory() as session:
            await session.execute(
                update(User).where(User.email == email).values(role=Role.customer.value)
            )
            await session.commit()
        assert (await api.get("/api/deliveries", headers=headers)).status_code == 403
        assert (await browser.get("/staff/board")).status_code == 403


async def test_the_audit_trail_records_the_accounts_role_not_the_tokens(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory, Role.staff)
    async with webapp.client(app) as api:
        token = await token_for(api, email)
        claims = jwt.decode(token, options={"verify_signature": False})
        forged = jwt.encode(
            {**claims, "role": "admin"}, get_settings().security.secret_key, algorithm="HS256"
        )
        response = await api.put(
            "/api/admin/partners/payment",
            json={"latencyMs": 0, "errorRate": 0, "down": False},
            headers={"Authorization": f"Bearer {forged}"},
        )
    assert response.status_code == 200, response.text
    async with session_factory() as session:
        role = await session.scalar(
            text(
                "SELECT a.actor_role FROM audit.entries a JOIN accounts.users u"
                " ON u.id = a.actor_id WHERE u.email = :email ORDER BY a.id DESC LIMIT 1"
            ),
            {"email": email},
        )
    assert role == "staff"
