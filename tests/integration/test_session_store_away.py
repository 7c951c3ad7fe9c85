"""The sessions' Redis away: a page answers 503 with ``Retry-After``, and its header does
not tell a signed-in customer that they are signed out with an empty basket (it cannot
know either way). The web app runs in the test process with its state Redis (sessions)
pointed at a port nobody listens on."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from app.platform.settings import get_settings
from tests.support.webapp import client, running

NOBODY = "redis://127.0.0.1:9/0"
COOKIE = "pizzeria_session"


def _nav(html: str) -> str:
    found = re.search(r"<nav>(.*?)</nav>", html, re.S)
    assert found is not None
    return found.group(1)


async def test_a_page_without_its_session_claims_no_signed_out_header(
    session_factory: Any,
) -> None:
    base = get_settings()
    settings = dataclasses.replace(
        base, redis=dataclasses.replace(base.redis, state_url_setting=NOBODY)
    )
    async with running(settings) as app, client(app) as browser:
        browser.cookies.set(COOKIE, "a-signed-in-customers-session-id")
        response = await browser.get("/")
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert "A service we depend on is unavailable" in response.text
    nav = _nav(response.text)
    assert 'href="/"' in nav, "the way back to the menu stays"
    assert "Sign in" not in nav and "Sign out" not in nav
    assert "basket-count" not in nav, "no empty basket that may not be empty"


async def test_a_visitor_without_a_session_gets_the_signed_out_header(
    session_factory: Any,
) -> None:
    async with running() as app, client(app) as browser:
        response = await browser.get("/")
    assert response.status_code == 200
    nav = _nav(response.text)
    assert "Sign in" in nav and "basket-count" in nav
