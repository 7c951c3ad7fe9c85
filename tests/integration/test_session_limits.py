"""A session ends after ``SESSION_IDLE_SECONDS`` without a request and after
``SESSION_ABSOLUTE_SECONDS`` whatever happens. The absolute limit is measured with the
app's clock, which this test moves; the idle limit is the session key's Redis TTL,
renewed on every request, which the test reads instead of waiting for it to run out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import service as accounts
from tests.support import webapp
from tests.support.api import PASSWORD
from tests.support.clock import Clock

SESSION = "pizzeria_session"
CSRF = "pizzeria_csrf"
IDLE, ABSOLUTE = 60, 600


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def app(migrated_db: str, sandbox_url: str, clock: Clock) -> AsyncIterator[Litestar]:
    settings = webapp.settings_with(session_idle_seconds=IDLE, session_absolute_seconds=ABSOLUTE)
    async with webapp.running(settings, clock=clock) as running:
        yield running


async def sign_in(client: httpx.AsyncClient, factory: async_sessionmaker[AsyncSession]) -> None:
    email = f"session-{uuid.uuid4().hex[:10]}@example.com"
    async with factory() as session:
        await accounts.sign_up(session, email=email, password=PASSWORD, name="Tester")
    await client.get("/login")
    response = await client.post(
        "/login", data={"email": email, "password": PASSWORD, "_csrf_token": client.cookies[CSRF]}
    )
    assert response.status_code == 303, response.text


async def test_a_busy_session_still_ends_at_the_absolute_limit(
    app: Litestar, clock: Clock, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with webapp.client(app) as browser:
        await sign_in(browser, session_factory)
        for _ in range(ABSOLUTE // IDLE):  # a request within every idle period
            assert (await browser.get("/orders")).status_code == 200
            clock.advance(IDLE - 1)
        clock.advance(ABSOLUTE - (ABSOLUTE // IDLE) * (IDLE - 1) + 1)  # just past the limit
        ended = await browser.get("/orders")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/login")


async def test_the_idle_limit_is_the_session_keys_ttl_renewed_by_each_request(
    app: Litestar, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    redis = app.state.state_redis
    async with webapp.client(app) as browser:
        await sign_in(browser, session_factory)
        [key] = [k async for k in redis.scan_iter(f"*{browser.cookies[SESSION]}*")]
        assert IDLE - 2 <= await redis.ttl(key) <= IDLE
        await redis.expire(key, 5)  # as if the visitor had been idle for almost the limit
        assert (await browser.get("/orders")).status_code == 200
        assert IDLE - 2 <= await redis.ttl(key) <= IDLE, "a request renews the idle limit"
        await redis.delete(key)  # what Redis does once the TTL runs out
        ended = await browser.get("/orders")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
