"""The web app inside the test process (no subprocess to start): for checks of the HTTP
edge that need no workers. Peers get real-looking addresses, so trusted-proxy and
rate-limit rules apply as in production."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
from litestar import Litestar

from app.main import create_app
from app.platform.settings import Settings, get_settings


def settings_with(**security: Any) -> Settings:
    """The test settings with some ``SecuritySettings`` / ``RateLimitSettings`` changed
    (``rate_limits=...`` replaces those)."""
    base = get_settings()
    limits = security.pop("rate_limits", base.rate_limits)
    return dataclasses.replace(
        base, security=dataclasses.replace(base.security, **security), rate_limits=limits
    )


@contextlib.asynccontextmanager
async def running(settings: Settings | None = None, **options: Any) -> AsyncIterator[Litestar]:
    """``create_app`` (with ``options``, such as a test's ``clock``) with its lifespan held
    by a task of its own (a fixture's setup and teardown run in different tasks, which
    anyio's task groups refuse)."""
    app = create_app(settings or get_settings(), **options)
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiting.cancel()
        task.result()  # raises what broke the start
    try:
        yield app
    finally:
        stop.set()
        await task


#: default peers, one per client: the rate limits count per address in a shared Redis, so
#: tests that all came from one address spent one sign-in allowance between them (a test
#: got 429 once a few more signed in). All in 203.0.113.0/24, which trusted-proxy tests
#: trust; a test that means one address for several clients passes ``peer``.
_PEERS = itertools.cycle(f"203.0.113.{n}" for n in range(100, 200))


def client(app: Litestar, peer: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """A browser or API client reaching ``app`` from ``peer`` (an address of its own by
    default)."""
    peer = peer or next(_PEERS)
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://shop.test", timeout=30, **kwargs)
