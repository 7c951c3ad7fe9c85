"""Settings read once from the environment.

Every knob lives here so that a reader can see the whole configuration surface in one
file; nothing else in the code reads ``os.environ``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Public development defaults: fine for a demo on a laptop, refused anywhere else.
DEV_SECRET_KEY = "dev-only-secret-change-me-in-production-0123"
DEV_COURIER_WEBHOOK_SECRET = "dev-only-courier-webhook-secret"
KNOWN_DEFAULT_SECRETS = frozenset(
    {DEV_SECRET_KEY, DEV_COURIER_WEBHOOK_SECRET, "change-me", "changeme", "secret"}
)
MIN_SECRET_LENGTH = 32


class BadSetting(ValueError):
    """A setting the process cannot run with: the message names the variable, what it
    holds and what it takes (the command line prints it as one line and stops)."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise BadSetting(f"{name}={raw!r}: a whole number is needed") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise BadSetting(f"{name}={raw!r}: a number is needed") from None


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off", ""})


def _env_bool(name: str, default: bool) -> bool:
    """A switch; a word that is neither on nor off is refused, not read as off (a
    ``PIZZERIA_HTTPS=maybe`` would quietly drop Secure cookies and HSTS)."""
    raw = os.environ.get(name, "1" if default else "0").strip().lower()
    if raw not in _TRUE | _FALSE:
        raise BadSetting(f"{name}={raw!r}: use 1 or 0 (true/false, yes/no, on/off)")
    return raw in _TRUE


def _at_least(name: str, value: float, least: float) -> None:
    if value < least:
        raise BadSetting(f"{name}={value}: must be at least {least:g}")


POOLING_MODES = ("session", "transaction")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _asyncpg_url(name: str, url: str) -> str:
    """``url`` for our driver: a managed database's ``postgres://`` or ``postgresql://``
    (which name no driver, or another one) becomes ``postgresql+asyncpg://``, and its
    ``sslmode=`` asyncpg's ``ssl=``; anything else that is not PostgreSQL is refused."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            url = "postgresql+asyncpg://" + url[len(scheme) :]
    if not url.startswith("postgresql+asyncpg://"):
        raise BadSetting(f"{name}={_redacted(url)!r}: use postgresql://user@host:5432/name")
    return re.sub(r"([?&])sslmode=", r"\1ssl=", url)


def _redacted(url: str) -> str:
    """A URL as an error may print it: without a password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the shop's connections go. Behind PgBouncer in transaction pooling mode (many
    replicas, PostgreSQL's 100 connections), set all three (see ``app.platform.db``)."""

    #: what every pool connects to: PostgreSQL itself, or PgBouncer in front of it
    url: str = field(
        default_factory=lambda: _env(
            "DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/pizzeria"
        )
    )
    #: ``session`` (PostgreSQL, or PgBouncer in session mode) or ``transaction``
    #: (PgBouncer's transaction pooling: no statement outlives its transaction)
    pooling: str = field(default_factory=lambda: _env("DATABASE_POOLING", "session"))
    #: straight to PostgreSQL, for what needs a server session of its own: the relay's
    #: ``LISTEN`` and migrations. Empty: ``url``
    direct_url_setting: str = field(default_factory=lambda: _env("DATABASE_DIRECT_URL", ""))
    pool_size: int = field(default_factory=lambda: _env_int("DATABASE_POOL_SIZE", 10))
    echo: bool = field(default_factory=lambda: _env_bool("DATABASE_ECHO", False))
    #: how long a statement (or a connect) of the pools may wait for PostgreSQL before it
    #: fails: a server that hangs (a partition, a stalled disk) must cost a request a 503,
    #: not hold it and its connection for ever (up to about twice this when the rollback
    #: that follows must wait for the server too). Long enough for any statement of ours
    #: that waits for a lock; migrations (``direct``) are not bounded.
    timeout_seconds: float = field(
        default_factory=lambda: _env_float("DATABASE_TIMEOUT_SECONDS", 10.0)
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _asyncpg_url("DATABASE_URL", self.url))
        if self.direct_url_setting:
            direct = _asyncpg_url("DATABASE_DIRECT_URL", self.direct_url_setting)
            object.__setattr__(self, "direct_url_setting", direct)
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"DATABASE_POOLING must be one of {', '.join(POOLING_MODES)}")
        if not self.timeout_seconds > 0:
            raise ValueError("DATABASE_TIMEOUT_SECONDS must be more than 0")

    @property
    def direct_url(self) -> str:
        return self.direct_url_setting or self.url


@dataclass(frozen=True)
class RedisSettings:
    """Redis by role; each role's URL defaults to ``REDIS_URL`` (see ``app.platform.redis``)."""

    url: str = field(default_factory=lambda: _env("REDIS_URL", "redis://127.0.0.1:6379/0"))
    #: arq's job queues
    queue_url_setting: str = field(default_factory=lambda: _env("REDIS_QUEUE_URL", ""))
    #: live updates (pub/sub)
    pubsub_url_setting: str = field(default_factory=lambda: _env("REDIS_PUBSUB_URL", ""))
    #: sessions, rate limits and circuit breakers; may be a Redis Cluster
    state_url_setting: str = field(default_factory=lambda: _env("REDIS_STATE_URL", ""))
    #: the state role's URL is a node of a Redis Cluster
    state_cluster: bool = field(default_factory=lambda: _env_bool("REDIS_STATE_CLUSTER", False))
    #: how long a command of the web (or any connect) may wait for Redis before it fails:
    #: a Redis that hangs (a partition, a stopped server) must fail a request with a 503,
    #: not hold it (a worker's job is ended by its own run-time limit)
    timeout_seconds: float = field(default_factory=lambda: _env_float("REDIS_TIMEOUT_SECONDS", 2.0))

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ValueError("REDIS_TIMEOUT_SECONDS must be more than 0")
        for name, url in (
            ("REDIS_URL", self.url),
            ("REDIS_QUEUE_URL", self.queue_url_setting),
            ("REDIS_PUBSUB_URL", self.pubsub_url_setting),
            ("REDIS_STATE_URL", self.state_url_setting),
        ):
            if url and not url.startswith(REDIS_SCHEMES):
                raise BadSetting(
                    f"{name}={_redacted(url)!r}: use redis://host:6379/0 (or rediss://, unix://)"
                )

    @property
    def queue_url(self) -> str:
        return self.queue_url_setting or self.url

    @property
    def pubsub_url(self) -> str:
        return self.pubsub_url_setting or self.url

    @property
    def state_url(self) -> str:
        return self.state_url_setting or self.url


@dataclass(frozen=True)
class SecuritySettings:
    secret_key: str = field(default_factory=lambda: _env("SECRET_KEY", DEV_SECRET_KEY))
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
    #: peers (addresses or networks, comma-separated) whose ``X-Forwarded-For`` we believe:
    #: the ingress / load balancer; empty: the TCP peer is the client
    forwarded_allow_ips: tuple[str, ...] = field(
        default_factory=lambda: _env_list("FORWARDED_ALLOW_IPS")
    )

    def __post_init__(self) -> None:
        _at_least("JWT_TTL_SECONDS", self.jwt_ttl_seconds, 1)
        _at_least("SESSION_IDLE_SECONDS", self.session_idle_seconds, 1)
        _at_least("SESSION_ABSOLUTE_SECONDS", self.session_absolute_seconds, 1)


@dataclass(frozen=True)
class RateLimitSettings:
    """Hits allowed per window (seconds); "client" keys by address, "account" by
    customer (orders) or by email and address together (sign-in)."""

    window_seconds: int = field(default_factory=lambda: _env_int("RATE_LIMIT_WINDOW", 300))
    signin_per_account: int = field(
        default_factory=lambda: _env_int("RATE_LIMIT_SIGNIN_PER_ACCOUNT", 10)
    )
    #: failed sign-ins for one account (from anywhere) before every attempt on it is
    #: slowed down by ``step`` seconds per further failure, never more than ``ceiling``
    signin_backoff_after: int = field(
        default_factory=lambda: _env_int("RATE_LIMIT_SIGNIN_BACKOFF_AFTER", 20)
    )
    signin_backoff_step: float = field(
        default_factory=lambda: _env_float("RATE_LIMIT_SIGNIN_BACKOFF_STEP", 0.25)
    )
    signin_backoff_ceiling: float = field(
        default_factory=lambda: _env_float("RATE_LIMIT_SIGNIN_BACKOFF_CEILING", 3.0)
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
        default_factory=lambda: _env("COURIER_WEBHOOK_SECRET", DEV_COURIER_WEBHOOK_SECRET)
    )
    #: still accepted on webhooks while the partner switches to the new secret (rotation)
    courier_webhook_secret_previous: str = field(
        default_factory=lambda: _env("COURIER_WEBHOOK_SECRET_PREVIOUS", "")
    )
    timeout_seconds: float = field(default_factory=lambda: _env_float("PARTNER_TIMEOUT", 3.0))
    #: a pickup with no partner news for this long is asked for its status (lost webhooks)
    courier_silence_seconds: float = field(
        default_factory=lambda: _env_float("COURIER_SILENCE_SECONDS", 120.0)
    )
    #: how often the delivery worker looks for such pickups (1 to 60 s)
    courier_reconcile_every_seconds: int = field(
        default_factory=lambda: _env_int("COURIER_RECONCILE_EVERY_SECONDS", 30)
    )
    courier_reconcile_batch: int = field(
        default_factory=lambda: _env_int("COURIER_RECONCILE_BATCH", 100)
    )

    @property
    def courier_webhook_secrets(self) -> tuple[str, ...]:
        """Every secret a webhook may be signed with: the current one, then the previous."""
        both = (self.courier_webhook_secret, self.courier_webhook_secret_previous)
        return tuple(secret for secret in both if secret)


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
    #: how long a process trusts a breaker it saw closed without asking Redis again: how
    #: late it may see one another process opened (``app.platform.breaker``); 0: never
    closed_lease_seconds: float = field(
        default_factory=lambda: _env_float("BREAKER_CLOSED_LEASE_SECONDS", 0.25)
    )


@dataclass(frozen=True)
class WorkerSettings:
    #: the longest a worker goes without looking at its queue: jobs enqueued by the relay
    #: wake it at once (``workers.supervised``); retries deferred to later wait this long
    poll_delay: float = field(default_factory=lambda: _env_float("WORKER_POLL_DELAY", 0.5))
    max_jobs: int = field(default_factory=lambda: _env_int("WORKER_MAX_JOBS", 20))
    db_pool: int = field(default_factory=lambda: _env_int("WORKER_DB_POOL", 4))
    #: with the 30 s backoff ceiling this is about eight hours of retries before a job
    #: gives up: a partner outage delays work, it does not drop it
    max_tries: int = field(default_factory=lambda: _env_int("WORKER_MAX_TRIES", 1000))
    retry_max_seconds: float = field(
        default_factory=lambda: _env_float("WORKER_RETRY_MAX_SECONDS", 30.0)
    )
    #: the relay waits this long after a notification so that events committing together
    #: go in one batch (``app.platform.relay.run_relay``): fewer transactions and Redis
    #: scripts per event under load, this much more latency per hop
    relay_linger: float = field(default_factory=lambda: _env_float("RELAY_LINGER_SECONDS", 0.005))

    def __post_init__(self) -> None:
        # a worker allowed no job starts, counts as a consumer, and never takes one
        _at_least("WORKER_MAX_JOBS", self.max_jobs, 1)
        _at_least("WORKER_DB_POOL", self.db_pool, 1)
        _at_least("WORKER_MAX_TRIES", self.max_tries, 1)
        _at_least("WORKER_POLL_DELAY", self.poll_delay, 0.01)
        _at_least("WORKER_RETRY_MAX_SECONDS", self.retry_max_seconds, 0)
        _at_least("RELAY_LINGER_SECONDS", self.relay_linger, 0)


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
    #: relay and workers touch this file from their event loop: the pod's liveness probe
    #: (``app.platform.liveness``); "" = off
    liveness_file: str = field(default_factory=lambda: _env("LIVENESS_FILE", ""))


@dataclass(frozen=True)
class PipelineSettings:
    """The event pipeline's clocks (see README "How the parts fit")."""

    #: a job that has not run to its inbox row this long after it was enqueued is
    #: enqueued again, with the same job id (a no-op while Redis still holds it)
    redeliver_seconds: float = field(
        default_factory=lambda: _env_float("EVENT_REDELIVER_SECONDS", 30.0)
    )
    #: the paid order's delivery made by the payment worker right after the capture
    #: commits (``app.subscriptions.AFTER_COMMIT``) instead of by a job after a relay hop
    follow_ups: bool = field(default_factory=lambda: _env_bool("EVENT_FOLLOW_UPS", True))
    #: a follow-up with no inbox row this long after its event was published is handed
    #: to its queue by the reconciler (the process that was to run it died first): longer
    #: than the job that runs it may take (``partner_job_timeout``, 11 s by default)
    follow_up_seconds: float = field(
        default_factory=lambda: _env_float("EVENT_FOLLOW_UP_SECONDS", 15.0)
    )
    #: how often the reconciler looks
    reconcile_seconds: float = field(
        default_factory=lambda: _env_float("RECONCILE_INTERVAL_SECONDS", 5.0)
    )
    #: how often relay and workers write their state for health
    heartbeat_seconds: float = field(default_factory=lambda: _env_float("HEARTBEAT_SECONDS", 5.0))
    #: an error we cannot tell transient is retried this many times, then dead-lettered
    poison_tries: int = field(default_factory=lambda: _env_int("WORKER_POISON_TRIES", 5))
    #: run-time limit of a job that talks to PostgreSQL only
    job_timeout_seconds: float = field(
        default_factory=lambda: _env_float("WORKER_JOB_TIMEOUT", 10.0)
    )
    #: the watchdog (the one definition of "stuck", for the board, ``/health`` and the
    #: ``pizzeria_stuck_orders`` gauge): orders whose payment has not settled, paid
    #: orders with no delivery, deliveries waiting on the partner with no news, refunds
    #: with no return, after this many minutes
    stalled_payment_minutes: float = field(
        default_factory=lambda: _env_float("WATCHDOG_PAYMENT_MINUTES", 10.0)
    )
    stalled_paid_minutes: float = field(
        default_factory=lambda: _env_float("WATCHDOG_PAID_MINUTES", 10.0)
    )
    stalled_partner_minutes: float = field(
        default_factory=lambda: _env_float("WATCHDOG_PARTNER_MINUTES", 30.0)
    )
    stalled_return_minutes: float = field(
        default_factory=lambda: _env_float("WATCHDOG_RETURN_MINUTES", 120.0)
    )


def _stage_minutes(raw: str) -> dict[str, float]:
    """``"queued=4,preparing=6"`` → ``{"queued": 4.0, "preparing": 6.0}``."""
    minutes: dict[str, float] = {}
    for part in raw.split(","):
        name, _, value = part.partition("=")
        try:
            minutes[name.strip()] = max(0.0, float(value))
        except ValueError as exc:
            raise ValueError(f"ETA_STAGE_MINUTES: bad entry {part!r}") from exc
    return minutes


@dataclass(frozen=True)
class ShopSettings:
    #: ISO 4217; amounts are integers in the currency's minor units (won have none)
    currency: str = field(default_factory=lambda: _env("PIZZERIA_CURRENCY", "KRW"))
    name: str = field(default_factory=lambda: _env("PIZZERIA_NAME", "Pizzeria"))
    #: every time a person reads is shown in this zone
    timezone: str = field(default_factory=lambda: _env("PIZZERIA_TIMEZONE", "Asia/Seoul"))
    #: what a coupon takes off the next order, in minor units (default ₩3,000 or 3.00)
    coupon_discount: int = field(
        default_factory=lambda: _env_int(
            "COUPON_DISCOUNT", 3000 if _env("PIZZERIA_CURRENCY", "KRW") == "KRW" else 300
        )
    )
    #: minutes since payment after which the board shows a delivery amber / red
    late_amber_minutes: int = field(default_factory=lambda: _env_int("LATE_AMBER_MINUTES", 20))
    late_red_minutes: int = field(default_factory=lambda: _env_int("LATE_RED_MINUTES", 40))
    refund_window_hours: int = field(default_factory=lambda: _env_int("REFUND_WINDOW_HOURS", 48))
    #: typical minutes per stage, used for delivery windows until there is history
    stage_minutes: dict[str, float] = field(
        default_factory=lambda: _stage_minutes(
            _env("ETA_STAGE_MINUTES", "queued=4,preparing=6,baking=9,ready=4,out_for_delivery=15")
        )
    )

    def __post_init__(self) -> None:
        try:  # an unknown zone would fail every page that shows a time, not the start
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadSetting(
                f"PIZZERIA_TIMEZONE={self.timezone!r}: use an IANA zone such as Asia/Seoul"
            ) from None

    @property
    def refund_window(self) -> timedelta:
        return timedelta(hours=self.refund_window_hours)


@dataclass(frozen=True)
class ObservabilitySettings:
    """Logs and metrics (see ``app.platform.logs`` and ``app.platform.metrics``)."""

    #: ``console`` (readable lines, the default) or ``json`` (one object per line)
    log_format: str = field(default_factory=lambda: _env("LOG_FORMAT", "console"))
    log_level: str = field(default_factory=lambda: _env("LOG_LEVEL", "INFO"))
    #: when set, ``/metrics`` on the web answers only ``Authorization: Bearer <token>``
    metrics_token: str = field(default_factory=lambda: _env("METRICS_TOKEN", ""))
    #: the relay's and a worker's own metrics port (0: none); ``--metrics-port`` overrides
    metrics_port: int = field(default_factory=lambda: _env_int("METRICS_PORT", 0))

    def __post_init__(self) -> None:
        if self.log_format.lower() not in LOG_FORMATS:
            raise BadSetting(f"LOG_FORMAT={self.log_format!r}: use {' or '.join(LOG_FORMATS)}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise BadSetting(f"LOG_LEVEL={self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        if not 0 <= self.metrics_port <= 65535:
            raise BadSetting(f"METRICS_PORT={self.metrics_port}: a port is 0 to 65535")


LOG_FORMATS = ("console", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    db: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    partners: PartnerSettings = field(default_factory=PartnerSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    shop: ShopSettings = field(default_factory=ShopSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    debug: bool = field(default_factory=lambda: _env_bool("PIZZERIA_DEBUG", False))
    #: a demo on one machine (``pizzeria up`` with embedded databases): public default
    #: secrets are tolerated; nowhere else
    demo: bool = field(default_factory=lambda: _env_bool("PIZZERIA_DEMO", False))
    #: where partners reach us (webhooks)
    public_url: str = field(default_factory=lambda: _env("PUBLIC_URL", "http://127.0.0.1:8000"))


class InsecureSettings(RuntimeError):
    """A secret is missing, a published default or too short: the process must not start."""


def secret_problems(settings: Settings) -> list[str]:
    """What is wrong with the secrets, one line per variable (empty: all good)."""
    secrets = {
        "SECRET_KEY": settings.security.secret_key,
        "COURIER_WEBHOOK_SECRET": settings.partners.courier_webhook_secret,
    }
    if settings.partners.courier_webhook_secret_previous:
        secrets["COURIER_WEBHOOK_SECRET_PREVIOUS"] = (
            settings.partners.courier_webhook_secret_previous
        )
    problems = []
    for name, value in secrets.items():
        if not value.strip():
            problems.append(f"{name} is not set")
        elif value in KNOWN_DEFAULT_SECRETS:
            problems.append(f"{name} is a published default value")
        elif len(value) < MIN_SECRET_LENGTH:
            problems.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters")
    return problems


def require_secrets(settings: Settings) -> None:
    """Refuse to run with guessable secrets (anyone could mint tokens or webhooks), except
    in demo mode (``PIZZERIA_DEMO=1``). Every process calls this at start."""
    problems = secret_problems(settings)
    if problems and not settings.demo:
        raise InsecureSettings(
            "refusing to start: "
            + "; ".join(problems)
            + " (set a random value of at least "
            + f"{MIN_SECRET_LENGTH} characters, e.g. `openssl rand -hex 32`)"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
