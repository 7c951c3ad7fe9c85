"""Settings read once from the environment.

Every knob lives here so that a reader can see the whole configuration surface in one
file; nothing else in the code reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, str(default)))


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(
        default_factory=lambda: _env(
            "DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/pizzeria"
        )
    )
    pool_size: int = field(default_factory=lambda: _env_int("DATABASE_POOL_SIZE", 10))
    echo: bool = field(default_factory=lambda: _env_bool("DATABASE_ECHO", False))


@dataclass(frozen=True)
class RedisSettings:
    url: str = field(default_factory=lambda: _env("REDIS_URL", "redis://127.0.0.1:6379/0"))


@dataclass(frozen=True)
class SecuritySettings:
    secret_key: str = field(
        default_factory=lambda: _env("SECRET_KEY", "dev-only-secret-change-me-in-production-0123")
    )
    jwt_ttl_seconds: int = field(default_factory=lambda: _env_int("JWT_TTL_SECONDS", 900))
    #: a session ends after this long without a request …
    session_idle_seconds: int = field(
        default_factory=lambda: _env_int("SESSION_IDLE_SECONDS", 2 * 3600)
    )
    #: … and after this long in any case
    session_absolute_seconds: int = field(
        default_factory=lambda: _env_int("SESSION_ABSOLUTE_SECONDS", 12 * 3600)
    )
    https: bool = field(default_factory=lambda: _env_bool("PIZZERIA_HTTPS", False))


@dataclass(frozen=True)
class RateLimitSettings:
    """Hits allowed per window (seconds); "account" keys by email / customer, "client"
    by address."""

    window_seconds: int = field(default_factory=lambda: _env_int("RATE_LIMIT_WINDOW", 300))
    signin_per_account: int = field(
        default_factory=lambda: _env_int("RATE_LIMIT_SIGNIN_PER_ACCOUNT", 10)
    )
    signin_per_client: int = field(
        default_factory=lambda: _env_int("RATE_LIMIT_SIGNIN_PER_CLIENT", 50)
    )
    signup_per_client: int = field(
        default_factory=lambda: _env_int("RATE_LIMIT_SIGNUP_PER_CLIENT", 20)
    )
    orders_per_account: int = field(
        default_factory=lambda: _env_int("RATE_LIMIT_ORDERS_PER_ACCOUNT", 60)
    )
    orders_per_client: int = field(
        default_factory=lambda: _env_int("RATE_LIMIT_ORDERS_PER_CLIENT", 300)
    )


@dataclass(frozen=True)
class PartnerSettings:
    payment_url: str = field(
        default_factory=lambda: _env("PAYMENT_PROVIDER_URL", "http://127.0.0.1:8100")
    )
    courier_url: str = field(
        default_factory=lambda: _env("COURIER_PARTNER_URL", "http://127.0.0.1:8100")
    )
    courier_webhook_secret: str = field(
        default_factory=lambda: _env("COURIER_WEBHOOK_SECRET", "dev-only-courier-webhook-secret")
    )
    timeout_seconds: float = field(default_factory=lambda: _env_float("PARTNER_TIMEOUT", 3.0))


@dataclass(frozen=True)
class BreakerSettings:
    """Circuit breaker policy shared by every partner breaker (see ``app.platform.breaker``)."""

    window_size: int = field(default_factory=lambda: _env_int("BREAKER_WINDOW_SIZE", 20))
    minimum_calls: int = field(default_factory=lambda: _env_int("BREAKER_MINIMUM_CALLS", 10))
    failure_rate: float = field(default_factory=lambda: _env_float("BREAKER_FAILURE_RATE", 50.0))
    slow_call_rate: float = field(
        default_factory=lambda: _env_float("BREAKER_SLOW_CALL_RATE", 80.0)
    )
    slow_call_seconds: float = field(
        default_factory=lambda: _env_float("BREAKER_SLOW_CALL_SECONDS", 2.0)
    )
    open_seconds: float = field(default_factory=lambda: _env_float("BREAKER_OPEN_SECONDS", 15.0))
    half_open_calls: int = field(default_factory=lambda: _env_int("BREAKER_HALF_OPEN_CALLS", 3))


@dataclass(frozen=True)
class WorkerSettings:
    poll_delay: float = field(default_factory=lambda: _env_float("WORKER_POLL_DELAY", 0.05))
    max_jobs: int = field(default_factory=lambda: _env_int("WORKER_MAX_JOBS", 20))
    db_pool: int = field(default_factory=lambda: _env_int("WORKER_DB_POOL", 4))
    #: with the 30 s backoff ceiling this is about eight hours of retries before a job
    #: gives up: a partner outage delays work, it does not drop it
    max_tries: int = field(default_factory=lambda: _env_int("WORKER_MAX_TRIES", 1000))
    retry_max_seconds: float = field(
        default_factory=lambda: _env_float("WORKER_RETRY_MAX_SECONDS", 30.0)
    )


@dataclass(frozen=True)
class LifecycleSettings:
    """Serving and stopping (see ``app.platform.lifecycle``); Kubernetes'
    ``terminationGracePeriodSeconds`` must exceed drain + grace."""

    #: web: unready but still serving, so the balancer notices before the socket closes
    drain_seconds: float = field(default_factory=lambda: _env_float("SHUTDOWN_DRAIN_SECONDS", 0.0))
    #: web: requests in flight may take this long to finish once the socket is closed
    grace_seconds: float = field(default_factory=lambda: _env_float("SHUTDOWN_GRACE_SECONDS", 10.0))
    #: workers: a job running at SIGTERM may take this long to finish (then it is retried)
    job_seconds: float = field(default_factory=lambda: _env_float("SHUTDOWN_JOB_SECONDS", 20.0))
    #: web: an idle keep-alive connection stays open this long. Longer than any balancer's
    #: own idle timeout (ingress-nginx, HAProxy: 60 s), or the balancer may send a request
    #: down a connection at the moment we close it, and the client gets an error
    keep_alive_seconds: int = field(default_factory=lambda: _env_int("HTTP_KEEP_ALIVE_SECONDS", 75))
    #: relay and workers touch this file from their event loop (liveness probe); "" = off
    heartbeat_file: str = field(default_factory=lambda: _env("HEARTBEAT_FILE", ""))


@dataclass(frozen=True)
class ShopSettings:
    currency: str = field(default_factory=lambda: _env("PIZZERIA_CURRENCY", "EUR"))
    name: str = field(default_factory=lambda: _env("PIZZERIA_NAME", "Pizzeria"))
    timezone: str = field(default_factory=lambda: _env("PIZZERIA_TIMEZONE", "UTC"))
    #: what a coupon takes off the next order, in minor units
    coupon_discount: int = field(default_factory=lambda: _env_int("COUPON_DISCOUNT", 300))
    #: minutes since payment after which the board shows a delivery amber / red
    late_amber_minutes: int = field(default_factory=lambda: _env_int("LATE_AMBER_MINUTES", 20))
    late_red_minutes: int = field(default_factory=lambda: _env_int("LATE_RED_MINUTES", 40))
    refund_window_hours: int = field(default_factory=lambda: _env_int("REFUND_WINDOW_HOURS", 48))

    @property
    def refund_window(self) -> timedelta:
        return timedelta(hours=self.refund_window_hours)


@dataclass(frozen=True)
class Settings:
    db: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    partners: PartnerSettings = field(default_factory=PartnerSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    shop: ShopSettings = field(default_factory=ShopSettings)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    debug: bool = field(default_factory=lambda: _env_bool("PIZZERIA_DEBUG", False))
    #: where partners reach us (webhooks)
    public_url: str = field(default_factory=lambda: _env("PUBLIC_URL", "http://127.0.0.1:8000"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
