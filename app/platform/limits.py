"""The shop's rate limits (sign-in, sign-up, token, order placement), per account and per
client address, counted in Redis so every web process shares them."""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.platform import clients
from app.platform.ratelimit import Limit, RateLimiter
from app.platform.settings import RateLimitSettings, Settings


def client_address(request: Request[Any, Any, Any]) -> str:
    """The caller's address (``X-Forwarded-For`` only from ``FORWARDED_ALLOW_IPS`` peers)."""
    return clients.client_address(request, _settings(request).security.forwarded_allow_ips)


def _limiter(request: Request[Any, Any, Any]) -> RateLimiter:
    return request.app.state.limiter  # type: ignore[no-any-return]


def _settings(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _signin_failures(rl: RateLimitSettings) -> Limit:
    return Limit("signin-failures", rl.signin_backoff_after, rl.window_seconds)


async def signin(request: Request[Any, Any, Any], email: str) -> None:
    """Password guessing. Refused (429) per account *and* client together, and per client
    whatever the account: an attacker elsewhere cannot lock the owner out. Per account
    from anywhere, failures only slow every attempt down (bounded back-off), so a
    distributed attack gets slow but the owner still gets in."""
    rl = _settings(request).rate_limits
    limiter = _limiter(request)
    client = client_address(request)
    account = email.strip().lower()
    await limiter.hit(
        (Limit("signin-client", rl.signin_per_client, rl.window_seconds), client),
        (Limit("signin-account", rl.signin_per_account, rl.window_seconds), f"{account} {client}"),
    )
    await limiter.back_off(
        _signin_failures(rl), account, rl.signin_backoff_step, rl.signin_backoff_ceiling
    )


async def signin_failed(request: Request[Any, Any, Any], email: str) -> None:
    """A wrong password for ``email``: feeds the per-account back-off."""
    rl = _settings(request).rate_limits
    await _limiter(request).count(_signin_failures(rl), email.strip().lower())


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
