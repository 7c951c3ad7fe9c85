"""Real-browser fixtures: Debian's chromium driven by the async Playwright API.

Playwright cannot download its own browsers here, so the system chromium is launched
directly. Without it the browser tests are skipped, unless ``PIZZERIA_REQUIRE_BROWSER=1``
(CI) makes a missing browser a failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

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


@pytest.fixture
async def context(browser: Browser, shop: Shop) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) pointed at the running shop."""
    ctx = await browser.new_context(base_url=shop.url)
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()
