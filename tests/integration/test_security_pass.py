"""Issue 12, the second security pass: each test here failed before its fix.

The web app runs inside the test process (``tests.support.webapp``) on the real test
database and Redis; peers get documentation addresses (203.0.113.x), so the client
address rules apply exactly as behind a real network.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

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


# -- password change and sign out everywhere ---------------------------------------------


async def test_a_password_change_ends_every_other_session_and_token(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with (
        webapp.client(app) as here,
        webapp.client(app) as elsewhere,
        webapp.client(app) as api,
    ):
        csrf = await sign_in(here, email)
        await sign_in(elsewhere, email)
        headers = {"Authorization": f"Bearer {await token_for(api, email)}"}
        changed = await here.post(
            "/account/password",
            data={
                "current_password": PASSWORD,
                "new_password": "a-brand-new-passphrase-42",
                "_csrf_token": csrf,
            },
        )
        assert changed.status_code == 200, changed.text
        assert (await here.get("/orders")).status_code == 200, "this session carries on"
        gone = await elsewhere.get("/orders")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
        assert (await api.get("/api/orders", headers=headers)).status_code == 401


async def test_sign_out_everywhere_ends_every_session_and_token(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    async with (
        webapp.client(app) as here,
        webapp.client(app) as elsewhere,
        webapp.client(app) as api,
    ):
        csrf = await sign_in(here, email)
        await sign_in(elsewhere, email)
        headers = {"Authorization": f"Bearer {await token_for(api, email)}"}
        account = await here.get("/account")
        assert 'action="/account/sign-out-everywhere"' in account.text
        out = await here.post("/account/sign-out-everywhere", data={"_csrf_token": csrf})
        assert out.status_code == 303
        for browser in (here, elsewhere):
            assert (await browser.get("/orders")).status_code == 303
        assert (await api.get("/api/orders", headers=headers)).status_code == 401
        await sign_in(here, email)
        assert (await here.get("/orders")).status_code == 200, "signing in again works"


# -- sign-in limits: no lockout of the owner ----------------------------------------------


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _wrong(client: httpx.AsyncClient, email: str, address: str) -> int:
    response = await client.post(
        "/api/auth/token",
        data={"username": email, "password": "not-the-password-1"},
        headers=_from(address),
    )
    return response.status_code


async def test_an_attacker_cannot_lock_the_owner_out(
    migrated_db: str, sandbox_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Behind a trusted proxy: one client hammering an account is refused, the owner on
    another client signs in while it goes on."""
    email = await new_user(session_factory)
    settings = webapp.settings_with(forwarded_allow_ips=("203.0.113.0/24",))
    async with webapp.running(settings) as app, webapp.client(app) as client:
        attacker, owner = "198.51.100.66", "198.51.100.77"
        codes = [await _wrong(client, email, attacker) for _ in range(12)]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
        response = await client.post(
            "/api/auth/token",
            data={"username": email, "password": PASSWORD},
            headers=_from(owner),
        )
        assert response.status_code == 200, response.text
        assert await _wrong(client, email, attacker) == 429, "the attack is still refused"


async def test_a_distributed_attack_slows_down_but_never_locks_the_account(
    migrated_db: str, sandbox_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    email = await new_user(session_factory)
    limits = RateLimitSettings(
        signin_backoff_after=3, signin_backoff_step=0.25, signin_backoff_ceiling=1.0
    )
    settings = webapp.settings_with(forwarded_allow_ips=("*",), rate_limits=limits)
    async with webapp.running(settings) as app, webapp.client(app) as client:
        for i in range(10):  # ten clients, each well under its own limit
            assert await _wrong(client, email, f"198.51.100.{i + 1}") == 401
        started = time.monotonic()
        response = await client.post(
            "/api/auth/token",
            data={"username": email, "password": PASSWORD},
            headers=_from("192.0.2.200"),
        )
        waited = time.monotonic() - started
    assert response.status_code == 200, "the owner still gets in"
    assert waited >= limits.signin_backoff_ceiling * 0.9, "attempts on the account are slowed"


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Default settings (no trusted proxy): a client cannot pick its own rate-limit key."""
    assert get_settings().security.forwarded_allow_ips == ()
    email = await new_user(session_factory)
    async with webapp.client(app, peer="203.0.113.99") as client:
        codes = [await _wrong(client, email, f"198.51.100.{i + 1}") for i in range(11)]
    assert codes[-1] == 429, "eleven tries from one peer, whatever the header says"
