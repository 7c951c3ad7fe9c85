"""The API reference (``/schema``) renders in a real browser under the shop's own
Content-Security-Policy: Swagger UI comes from ``/static`` and starts from a script
file, with nothing blocked (it was a blank page: CDN scripts and an inline start)."""

from __future__ import annotations

from playwright.async_api import ConsoleMessage, Page, expect


async def test_the_api_reference_renders_with_nothing_blocked(page: Page) -> None:
    complaints: list[str] = []

    def heard(message: ConsoleMessage) -> None:
        if message.type == "error":
            complaints.append(message.text)

    page.on("console", heard)
    response = await page.goto("/schema")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in (response.headers.get("content-security-policy") or "")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Pizzeria API")
    await expect(
        page.locator(".opblock-summary-path", has_text="/api/orders").first
    ).to_be_visible()
    # a bearer token can be asked for right there (the document names the scheme)
    await expect(page.locator(".swagger-ui button.authorize")).to_be_visible()
    assert complaints == [], complaints

    await page.goto("/schema/swagger")  # the plugin's own path: the same document
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Pizzeria API")
    assert complaints == [], complaints
