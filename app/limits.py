"""The shop's rate limits (sign-in, sign-up, token, order placement), per account and per
client address, counted in Redis so every web process shares them."""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.platform.ratelimit import Limit, RateLimiter
from app.platform.settings import Settings


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def _limiter(request: Request[Any, Any, Any]) -> RateLimiter:
    return request.app.state.limiter  # type: ignore[no-any-return]


def _settings(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def signin(request: Request[Any, Any, Any], email: str) -> None:
    """Password guessing: per account (whoever tries) and per client (whatever account)."""
    rl = _settings(request).rate_limits
    limiter = _limiter(request)
    await limiter.hit(
        (Limit("signin-client", rl.signin_per_client, rl.window_seconds), client_address(request)),
        (Limit("signin-account", rl.signin_per_account, rl.window_seconds), email.strip()),
    )


async def signup(request: Request[Any, Any, Any]) -> None:
    rl = _settings(request).rate_limits
    await _limiter(request).hit(
        (Limit("signup-client", rl.signup_per_client, rl.window_seconds), client_address(request))
    )


async def place_order(request: Request[Any, Any, Any], customer: str) -> None:
    rl = _settings(request).rate_limits
    limiter = _limiter(request)
    await limiter.hit(
        (Limit("orders-client", rl.orders_per_client, rl.window_seconds), client_address(request)),
        (Limit("orders-account", rl.orders_per_account, rl.window_seconds), customer),
    )
