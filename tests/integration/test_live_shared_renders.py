"""Live pages rendered once for all their viewers on a web process, each viewer's copy
carrying its own CSRF token (a form that arrives through the stream must work when
clicked, and must never carry another person's token)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

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


@contextlib.asynccontextmanager
async def watching(viewers: list[httpx.AsyncClient], path: str) -> AsyncIterator[list[SseStream]]:
    """Each viewer's stream of ``path``, open (its first frame arrived) until the block
    ends."""
    streams = [SseStream() for _ in viewers]
    readers = [
        asyncio.create_task(read_stream(viewer, path, {}, stream))
        for viewer, stream in zip(viewers, streams, strict=True)
    ]
    try:
        for stream in streams:
            await _frames(stream, 1)
        yield streams
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


async def _browsers(
    stack: contextlib.AsyncExitStack, shop: Shop, count: int
) -> list[httpx.AsyncClient]:
    return [
        await stack.enter_async_context(httpx.AsyncClient(base_url=shop.url, timeout=20))
        for _ in range(count)
    ]


async def test_every_staff_screen_gets_the_board_with_its_own_working_csrf_token(
    client: httpx.AsyncClient, shop: Shop, staff: dict[str, str]
) -> None:
    order = await paid_order(client, await new_customer(client))
    delivery_id = order["delivery"]["id"]
    async with contextlib.AsyncExitStack() as stack:
        screens = await _browsers(stack, shop, 3)
        tokens = [
            await browser_session(screen, await create_user(shop.env, "staff"))
            for screen in screens
        ]
        assert len(set(tokens)) == 3
        async with watching(screens, "/staff/board/stream") as streams:
            moved = await client.post(f"/api/deliveries/{delivery_id}/advance", headers=staff)
            assert moved.status_code == 200, moved.text
            for stream in streams:
                await _frames(stream, 2)
        frames = [stream.messages[-1].data for stream in streams]
        for token, frame in zip(tokens, frames, strict=True):
            assert delivery_id in frame, "the card is on the board"
            assert set(TOKEN.findall(frame)) == {token}, "this screen's token, and only it"
            assert "csrf-slot" not in frame
        # the board's own button, with the token the stream brought, works
        clicked = await screens[0].post(
            f"/staff/deliveries/{delivery_id}/advance",
            data={"_csrf_token": TOKEN.findall(frames[0])[0], "from": "preparing"},
            headers={"HX-Request": "true"},
        )
        assert clicked.status_code == 200, clicked.text


async def test_every_viewer_of_an_order_page_gets_its_own_csrf_token(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    customer = await new_customer(client)
    order = await paid_order(client, customer)
    async with contextlib.AsyncExitStack() as stack:
        tabs = await _browsers(stack, shop, 2)
        tokens = [await browser_session(tab, customer["email"]) for tab in tabs]
        assert tokens[0] != tokens[1]
        async with watching(tabs, f"/orders/{order['id']}/stream") as streams:
            frames = [stream.messages[-1].data for stream in streams]
    for token, frame in zip(tokens, frames, strict=True):
        assert set(TOKEN.findall(frame)) == {token}, "this tab's token, and only it"
