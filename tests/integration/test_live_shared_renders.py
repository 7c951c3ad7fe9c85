"""Live pages rendered once for all their viewers on a web process, each viewer's copy
carrying its own CSRF token (a form that arrives through the stream must work when
clicked, and must never carry another person's token)."""

from __future__ import annotations

import asyncio
import contextlib
import re

import httpx

from tests.support.api import browser_session, create_user, new_customer, paid_order
from tests.support.processes import Shop
from tests.support.sse import SseStream, read_stream

TOKEN = re.compile(r'name="_csrf_token" value="([^"]+)"')


async def _frames(stream: SseStream, count: int, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while len(stream.messages) < count:
            if stream.error:
                raise AssertionError(stream.error)
            await asyncio.sleep(0.05)


async def test_every_staff_screen_gets_the_board_with_its_own_working_csrf_token(
    client: httpx.AsyncClient, shop: Shop, staff: dict[str, str]
) -> None:
    order = await paid_order(client, await new_customer(client))
    delivery_id = order["delivery"]["id"]
    async with contextlib.AsyncExitStack() as stack:
        screens = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=shop.url, timeout=20))
            for _ in range(3)
        ]
        tokens = [
            await browser_session(screen, await create_user(shop.env, "staff"))
            for screen in screens
        ]
        assert len(set(tokens)) == 3
        streams = [SseStream() for _ in screens]
        readers = [
            asyncio.create_task(read_stream(screen, "/staff/board/stream", {}, stream))
            for screen, stream in zip(screens, streams, strict=True)
        ]
        try:
            for stream in streams:
                await _frames(stream, 1)
            moved = await client.post(f"/api/deliveries/{delivery_id}/advance", headers=staff)
            assert moved.status_code == 200, moved.text
            for stream in streams:
                await _frames(stream, 2)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

        for screen, token, stream in zip(screens, tokens, streams, strict=True):
            frame = stream.messages[-1].data
            assert delivery_id in frame, "the card is on the board"
            assert set(TOKEN.findall(frame)) == {token}, "this screen's token, and only it"
            assert "csrf-slot" not in frame
            # the board's own button, with the token the stream brought, works
            clicked = await screen.post(
                f"/staff/deliveries/{delivery_id}/advance",
                data={"_csrf_token": TOKEN.findall(frame)[0], "from": "preparing"},
                headers={"HX-Request": "true"},
            )
            assert clicked.status_code == 200, clicked.text
            break  # one click moves the card on; the other tokens were checked above


async def test_every_viewer_of_an_order_page_gets_its_own_csrf_token(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    customer = await new_customer(client)
    order = await paid_order(client, customer)
    async with contextlib.AsyncExitStack() as stack:
        tabs = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=shop.url, timeout=20))
            for _ in range(2)
        ]
        tokens = [await browser_session(tab, customer["email"]) for tab in tabs]
        assert tokens[0] != tokens[1]
        streams = [SseStream() for _ in tabs]
        readers = [
            asyncio.create_task(read_stream(tab, f"/orders/{order['id']}/stream", {}, stream))
            for tab, stream in zip(tabs, streams, strict=True)
        ]
        try:
            for stream in streams:
                await _frames(stream, 1)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    for token, stream in zip(tokens, streams, strict=True):
        frame = stream.messages[-1].data
        assert set(TOKEN.findall(frame)) == {token}, "this tab's token, and only it"
