"""Real-browser fixtures: Debian's chromium driven by the async Playwright API.

Playwright cannot download its own browsers here, so the system chromium is launched
directly. Without it the browser tests are skipped, unless ``PIZZERIA_REQUIRE_BROWSER=1``
(CI) makes a missing browser a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    async_playwright,
    expect,
)

from app.platform import i18n
from tests.support.api import PASSWORD
from tests.support.processes import Shop

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The shop runs as several processes on a small, often busy machine: be patient.
ACTION_TIMEOUT_MS = 10_000
expect.set_options(timeout=ACTION_TIMEOUT_MS)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: cannot run the browser tests"
        if os.environ.get("PIZZERIA_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


#: the browser's language setting (Accept-Language, navigator.language) per shop language
BROWSER_LOCALES = {"en": "en-US", "ko": "ko-KR"}


@pytest.fixture
def lang() -> str:
    """The language the browser asks for; tests that run in both parametrize ``lang``."""
    return "en"


@pytest.fixture
def t(lang: str) -> Callable[..., str]:
    """What a person sees for an English UI text in the test's language (from the
    shop's catalog): ``t("Sign in")``, ``t("Add %(pizza)s", pizza="Margherita")``."""
    return lambda text, **params: words(lang, text, **params)


def words(lang: str, text: str, **params: str) -> str:
    translated = i18n.gettext(text, lang)
    if not params:
        return translated
    return translated % {k: i18n.translate(v, lang) for k, v in params.items()}


def pay_button(page: Page, lang: str) -> Locator:
    """The checkout's pay button, whose name carries the amount ("Place order and pay
    ₩29,800", "₩29,800 결제하기")."""
    words_around = words(lang, "Place order and pay %(amount)s", amount="").strip()
    return page.get_by_role("button", name=re.compile(re.escape(words_around)))


@pytest.fixture
async def context(browser: Browser, shop: Shop, lang: str) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) pointed at the running shop, asking for the
    test's language as a browser set to it would."""
    ctx = await browser.new_context(base_url=shop.url, locale=BROWSER_LOCALES[lang])
    ctx.set_default_timeout(ACTION_TIMEOUT_MS)
    refused = refused_by_the_csp(ctx)
    try:
        yield ctx
    finally:
        await ctx.close()
    assert not refused, f"the Content-Security-Policy refused: {refused}"


def refused_by_the_csp(ctx: BrowserContext, refused: list[str] | None = None) -> list[str]:
    """What the shop's Content-Security-Policy refused on any page of ``ctx``, as the
    browser's console says it: a script or a style the policy refuses silently breaks
    what it was for (the page shows no error), so every browser test fails on one."""
    refused = [] if refused is None else refused

    def heard(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            refused.append(f"{message.location.get('url')}: {message.text}")

    ctx.on("console", heard)
    return refused


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


# -- shared helpers for multi-user browser tests ----------------------------------------

#: SSE-driven changes: generous, but bounded.
LIVE_TIMEOUT_MS = 15_000


@pytest.fixture
async def api(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    """A JSON API client on the running shop (customers, staff actions)."""
    async with httpx.AsyncClient(base_url=shop.url, timeout=15) as client:
        yield client


@pytest.fixture
async def new_context(
    browser: Browser, shop: Shop, lang: str
) -> AsyncIterator[Callable[[], Awaitable[BrowserContext]]]:
    """Make more browser profiles (separate cookies, so separate sessions) for one test."""
    made: list[BrowserContext] = []

    async def make() -> BrowserContext:
        ctx = await browser.new_context(base_url=shop.url, locale=BROWSER_LOCALES[lang])
        ctx.set_default_timeout(ACTION_TIMEOUT_MS)
        made.append(ctx)
        refused_by_the_csp(ctx, refused)
        return ctx

    refused: list[str] = []
    try:
        yield make
    finally:
        for ctx in made:
            await ctx.close()
    assert not refused, f"the Content-Security-Policy refused: {refused}"


async def create_staff(shop: Shop) -> str:
    """A staff member made with the real CLI, as an operator would; returns the email."""
    email = f"staff-{uuid.uuid4().hex[:8]}@example.com"
    command = [sys.executable, "-m", "app.cli", "user", "create", "--email", email]
    command += ["--password", PASSWORD, "--role", "staff"]
    await asyncio.to_thread(
        subprocess.run, command, check=True, env={**os.environ, **shop.env}, capture_output=True
    )
    return email


async def sign_in(page: Page, email: str, password: str = PASSWORD, lang: str = "en") -> None:
    """Sign in through the login form, as a person would."""
    await page.goto("/login")
    await page.get_by_label(words(lang, "Email"), exact=True).fill(email)
    await page.get_by_label(words(lang, "Password"), exact=True).fill(password)
    await page.get_by_role("button", name=words(lang, "Sign in")).click()
    await expect(page.get_by_role("button", name=words(lang, "Sign out"))).to_be_visible()


async def mark(page: Page, value: str) -> None:
    """Mark the window: a full page reload would wipe the mark (see ``assert_marked``)."""
    await page.evaluate("value => { window.__marker = value; }", value)


async def assert_marked(page: Page, value: str) -> None:
    assert await page.evaluate("() => window.__marker") == value, f"{page.url} reloaded"
