"""Redis hangs (a partition, a server stopped in its tracks): it neither answers nor
closes the connection. Every request that needs it must still end, with a 503 and
``Retry-After`` after ``REDIS_TIMEOUT_SECONDS``, not wait for ever; and the shop works
again once Redis does. The web app runs in the test process against a redis-server the
test owns (stopped with SIGSTOP), the shared PostgreSQL and the sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.platform.pubsub import RESYNC, Broadcaster
from app.platform.settings import Settings, get_settings
from tests.support.api import auth, browser_session, new_customer, order_body
from tests.support.pipeline import eventually
from tests.support.redis_server import RedisServer
from tests.support.webapp import client, running

#: far longer than the timeout under test: a request still waiting then waits for ever
HUNG = 30.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def _settings(url: str) -> Settings:
    base = get_settings()
    redis = dataclasses.replace(
        base.redis,
        url=url,
        queue_url_setting="",
        pubsub_url_setting="",
        state_url_setting="",
        timeout_seconds=0.5,
    )
    return dataclasses.replace(base, redis=redis)


async def _answer(request: Any) -> httpx.Response:
    async with asyncio.timeout(HUNG):
        response: httpx.Response = await request
        return response


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text[:500]
    assert int(response.headers["Retry-After"]) > 0


async def test_requests_that_need_a_hung_redis_end_in_503_and_work_once_it_answers(
    session_factory: Any, redis_server: RedisServer
) -> None:
    async with (
        running(_settings(redis_server.url)) as app,
        client(app) as api,
        client(app, peer="203.0.113.8") as browser,
    ):
        customer = await new_customer(api)
        await browser_session(browser, customer["email"])
        redis_server.pause()
        try:
            placed = await _answer(
                api.post("/api/orders", json=order_body(), headers=auth(customer))
            )
            _unavailable(placed)
            assert placed.json()["code"] == "unavailable"
            page = await _answer(browser.get("/orders"))  # the session lives in Redis
            _unavailable(page)
            styles = await _answer(browser.get("/static/css/app.css"))
            assert styles.status_code == 200, "a static file needs no session"
            _unavailable(await _answer(api.get("/health/ready")))
        finally:
            redis_server.resume()
        placed = await _answer(api.post("/api/orders", json=order_body(), headers=auth(customer)))
        assert placed.status_code == 201, placed.text
        assert (await _answer(browser.get("/orders"))).status_code == 200


async def test_the_live_update_listener_waits_through_quiet_spells_longer_than_the_timeout(
    session_factory: Any, redis_server: RedisServer
) -> None:
    settings = _settings(redis_server.url)
    async with running(settings) as app:
        await asyncio.sleep(settings.redis.timeout_seconds * 4)  # not one message meanwhile
        broadcaster = app.state.broadcaster
        assert (broadcaster.state, broadcaster.reconnects) == ("ok", 0)


async def test_the_live_update_listener_notices_a_hung_redis_and_resyncs_its_pages_after(
    session_factory: Any, redis_server: RedisServer
) -> None:
    """A hung Redis keeps the subscription's socket open and sends nothing: without a PING
    of its own the listener would wait for ever, every live page stale and ``/health`` ok."""
    settings = _settings(redis_server.url)
    async with running(settings) as app, client(app) as api:
        broadcaster: Broadcaster = app.state.broadcaster
        await eventually(_in_state(broadcaster, "ok"), "the listener subscribed", timeout=HUNG)
        async with broadcaster.listen("board") as board:
            redis_server.pause()
            try:
                await eventually(
                    _in_state(broadcaster, "reconnecting"), "the silence noticed", timeout=HUNG
                )
                assert broadcaster.reconnects == 1
                assert broadcaster.error is not None and "RedisSilent" in broadcaster.error
                health = (await _answer(api.get("/health"))).json()
                assert health["status"] == "degraded"
                assert health["web"]["pubsub"]["state"] == "reconnecting"
            finally:
                redis_server.resume()
            await eventually(_in_state(broadcaster, "ok"), "the listener back", timeout=HUNG)
            async with asyncio.timeout(HUNG):
                assert RESYNC in await board.take(), "the board re-reads what it missed"
        assert broadcaster.reconnects == 1


def _in_state(broadcaster: Broadcaster, state: str) -> Any:
    async def probe() -> bool:
        return broadcaster.state == state

    return probe
