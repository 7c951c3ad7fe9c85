"""A session that cannot be saved because Redis is away (issue 9, found by the chaos
suite): the answer says "try again" (503, Retry-After) instead of a 500 raised after the
response had started. Redis here is a port nothing listens on: Redis down, for real."""

from __future__ import annotations

import socket
from typing import Any

from litestar import Litestar, Request, get
from litestar.response import Redirect
from litestar.stores.redis import RedisStore
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.platform.sessions import answer_stands, session_config
from app.platform.settings import get_settings


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _get_with_redis_down(handler: Any, path: str) -> Any:
    """``GET path`` on an app with only ``handler`` and sessions on a Redis that is down."""
    redis = Redis.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    app = Litestar(
        route_handlers=[handler],
        middleware=[session_config(get_settings()).middleware],
        stores={"sessions": RedisStore(redis, namespace="test:session")},
    )
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        return await client.get(path, follow_redirects=False)


@get("/remember")
async def remember(request: Request[Any, Any, Any]) -> str:
    request.session["basket"] = {"1": 2}
    return "kept"


async def test_a_session_redis_cannot_store_answers_503_not_500() -> None:
    response = await _get_with_redis_down(remember, "/remember")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert "set-cookie" not in response.headers


@get("/placed")
async def placed(request: Request[Any, Any, Any]) -> Redirect:
    answer_stands(request)  # as the checkout does once the order committed
    request.session["basket"] = {}
    return Redirect("/orders/42")


async def test_an_answer_about_a_committed_change_stands_when_the_session_cannot_be_saved() -> None:
    """A checkout that placed its order answers with the order even if emptying the basket
    is lost: a 503 there made customers place the order a second time."""
    response = await _get_with_redis_down(placed, "/placed")
    assert response.status_code in (302, 303)
    assert response.headers["location"] == "/orders/42"
