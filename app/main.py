"""The web application: ``create_app()`` wires every context's routes onto one Litestar app."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Router, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.plugins.prometheus import PrometheusConfig
from litestar.static_files import create_static_files_router
from litestar.stores.redis import RedisStore
from litestar.template.config import TemplateConfig
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from app import words
from app.accounts import service as accounts
from app.accounts.api import AuthApi
from app.accounts.pages import AccountPages
from app.audit.pages import AuditPages
from app.breakers import partner_breakers
from app.coupon.api import CouponApi
from app.coupon.pages import CouponPages
from app.delivery.api import DeliveryApi
from app.delivery.pages import BoardPages
from app.delivery.webhooks import courier_webhook
from app.menu.api import MenuApi
from app.operations.api import OperationsApi
from app.operations.health import database_away
from app.operations.health import report as health_report
from app.operations.metrics import metrics_endpoint
from app.operations.pages import PartnerPages, PipelinePages
from app.ordering.api import OrderingApi
from app.ordering.pages import BasketPages, CheckoutPages, MenuPages, OrderCancelPages
from app.payment.provider import HttpPaymentProvider
from app.payment.service import CardVault, GuardedVault
from app.platform import bodies, clients, deps, lifecycle, logs, metrics, openapi, web
from app.platform.access import access, access_guard
from app.platform.csrf import SessionCSRFMiddleware
from app.platform.db import create_engine, create_session_factory
from app.platform.errors import DomainError
from app.platform.headers import security_headers_hook
from app.platform.i18n import LocaleMiddleware, Msg
from app.platform.loop import freeze_startup_heap
from app.platform.pubsub import Broadcaster, publisher
from app.platform.ratelimit import RateLimiter
from app.platform.redis import (
    create_job_client,
    create_redis,
    create_state_redis,
)
from app.platform.relay import enqueue
from app.platform.sessions import session_config
from app.platform.settings import Settings, get_settings, require_secrets
from app.platform.uow import follow_up_after_commit, react_in_transaction, read_your_writes
from app.refund.api import RefundApi
from app.refund.pages import ReasonAdminPages, RefundPages, StaffRefundPages
from app.refund.returns import ReturnApi, ReturnPages
from app.status.api import OrderStatusApi
from app.status.pages import OrderPages
from app.status.service import project_in_transaction
from app.subscriptions import REACTIONS, SUBSCRIPTIONS, enqueued_after_commit

ROOT = Path(__file__).resolve().parent.parent
#: HTTP requests by route template (``group_path``: an order id never becomes a label)
HTTP_METRICS = PrometheusConfig(
    app_name="pizzeria", prefix="pizzeria_http", group_path=True, exclude=["^/metrics$"]
)


@get("/health/live", tags=["health"], include_in_schema=False, opt=access("public"))
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", tags=["health"], include_in_schema=False, opt=access("public"))
async def ready(state: State) -> dict[str, str]:
    """Ready only when PostgreSQL and Redis both answer and the process is not shutting
    down; 503 otherwise (the balancer then sends traffic elsewhere)."""
    if lifecycle.is_draining():
        raise HTTPException(
            status_code=503, detail="not ready: draining", headers={"Retry-After": "5"}
        )
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        for client in _distinct(state.redis, state.state_redis, state.queue_redis):
            await client.ping()
    except Exception as exc:
        raise HTTPException(
            status_code=503, detail=f"not ready: {type(exc).__name__}", headers={"Retry-After": "5"}
        ) from exc
    return {"status": "ready"}


@get("/health", tags=["health"], include_in_schema=False, opt=access("public"))
async def health(
    request: Request[Any, Any, Any],
    db: NamedDependency[AsyncSession],
    settings: NamedDependency[Settings],
    broadcaster: NamedDependency[Broadcaster],
) -> dict[str, Any]:
    """Every part of the shop: this web process's pub/sub listener, each relay and worker
    (heartbeats: ``ok``, ``redis_down``, ``gone``), the event backlog, dead letters and
    the watchdog's stuck work. Counts only; 200 even when degraded (``status`` says).

    It answers on the public address too (the Ingress sends every path to the web), so
    with ``METRICS_TOKEN`` set the parts go only to whoever holds it, like ``/metrics``:
    hosts, process names and Redis errors are not the public's; the rest get the status.
    While PostgreSQL cannot be reached it says so (``database``), still 200."""
    try:
        report = await health_report(db, settings, broadcaster)
    except Exception as exc:
        if not web.database_unavailable(exc):
            raise
        report = database_away(broadcaster, exc)
    token = settings.observability.metrics_token
    if metrics.authorized(request.headers.get("authorization"), token):
        return report
    return {"status": report["status"]}


def _lifespan(settings: Settings):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.engine = create_engine(settings)
        app.state.session_factory = create_session_factory(app.state.engine)
        # read-your-writes: every use case's events are projected as it completes
        read_your_writes(
            app.state.session_factory, project_in_transaction, publisher(app.state.redis)
        )
        # reactions in the recording transaction, and what they leave the relay (app.subscriptions)
        react_in_transaction(app.state.session_factory, REACTIONS, SUBSCRIPTIONS)
        # the placed order goes to the payment worker's queue right after its commit
        jobs = create_job_client(settings)
        if settings.pipeline.follow_ups:
            hand_over = functools.partial(enqueue, jobs)
            follow_up_after_commit(app.state.session_factory, enqueued_after_commit(), hand_over)
        listener = create_redis(settings, bounded=False)  # waits for messages as long as need be
        app.state.broadcaster = Broadcaster(listener, settings.redis.timeout_seconds)
        app.state.payment_provider = HttpPaymentProvider.from_settings(settings)
        app.state.card_vault = GuardedVault(app.state.payment_provider, app.state.breakers.payment)
        await app.state.broadcaster.start()
        freeze_startup_heap()
        unregister = lifecycle.on_stop_accepting(app.state.broadcaster.close_streams)
        try:
            yield
        finally:
            unregister()
            await app.state.payment_provider.aclose()
            await app.state.broadcaster.stop()
            await listener.aclose()
            await app.state.engine.dispose()
            await jobs.aclose()
            for client in _distinct(app.state.redis, app.state.state_redis, app.state.queue_redis):
                await client.aclose()

    return lifespan


def _card_vault(state: State) -> CardVault:
    """Where checkout exchanges a card number for the provider's token: through the
    payment breaker (built once, on ``app.state``)."""
    return state.card_vault  # type: ignore[no-any-return]


def _split(settings: Settings, role: str) -> bool:
    """Whether a Redis role has a client of its own (its URL differs from pub/sub's)."""
    if role == "state":
        return settings.redis.state_cluster or settings.redis.state_url != settings.redis.pubsub_url
    return settings.redis.queue_url != settings.redis.pubsub_url


def _distinct(*clients: Any) -> list[Any]:
    return list({id(client): client for client in clients}.values())


def _configure_templates(engine: JinjaTemplateEngine, settings: Settings) -> None:
    web.configure_templates(engine, settings)
    words.install(engine.engine)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], float] = time.time
) -> Litestar:
    """The web app. ``clock`` measures the sessions' absolute limit (tests move their own)."""
    settings = settings or get_settings()
    logs.configure_logging("web", settings)
    require_secrets(settings)
    clients.trusted_networks(settings.security.forwarded_allow_ips)  # malformed: stop now
    deps.resolve_in_turn()
    redis = create_redis(settings)  # pub/sub (live updates)
    # sessions, rate limits, breakers; and the queues (depths for /metrics): their own
    # clients only when their URLs differ (app.platform.redis)
    state_redis = create_state_redis(settings) if _split(settings, "state") else redis
    queue_redis = (
        create_redis(settings, settings.redis.queue_url) if _split(settings, "queue") else redis
    )
    api = Router(
        path="/",
        route_handlers=[
            AuthApi,
            MenuApi,
            OrderingApi,
            OrderStatusApi,
            CouponApi,
            DeliveryApi,
            OperationsApi,
            RefundApi,
            ReturnApi,
        ],
        dependencies={
            "caller": Provide(web.provide_api_principal),
            "staff_caller": Provide(web.provide_api_staff),
        },
    )
    pages = Router(
        path="/",
        route_handlers=[
            AccountPages,
            MenuPages,
            BasketPages,
            CheckoutPages,
            OrderCancelPages,
            OrderPages,
            CouponPages,
            BoardPages,
            ReturnPages,
            PartnerPages,
            PipelinePages,
            RefundPages,
            StaffRefundPages,
            ReasonAdminPages,
            AuditPages,
        ],
        dependencies={
            "customer": Provide(web.provide_customer),
            "staff": Provide(web.provide_staff),
            "admin": Provide(web.provide_admin),
        },
        include_in_schema=False,
    )
    app = Litestar(
        route_handlers=[
            live,
            ready,
            health,
            metrics_endpoint,
            courier_webhook,
            api,
            pages,
            create_static_files_router(
                path="/static", directories=[ROOT / "static"], opt=access("public")
            ),
        ],
        # what a handler may ask for by name: the kernel's services (app.platform.deps)
        # and the payment provider's card vault, all built once on app.state
        dependencies={**deps.PROVIDERS, "card_vault": Provide(_card_vault, sync_to_thread=False)},
        lifespan=[_lifespan(settings)],
        state=State(
            {
                "redis": redis,
                "state_redis": state_redis,
                "queue_redis": queue_redis,
                "settings": settings,
                "breakers": partner_breakers(state_redis, settings),
                "limiter": RateLimiter(state_redis),
                "account_standing": accounts.standing,
            }
        ),
        stores={"sessions": RedisStore(state_redis, namespace="pizzeria:session")},
        # CSRF inside the session middleware: the token is bound to the session.
        middleware=[
            logs.request_context,
            HTTP_METRICS.middleware,
            session_config(settings, clock).middleware,
            DefineMiddleware(SessionCSRFMiddleware, settings=settings),
            LocaleMiddleware,
        ],
        type_encoders={Msg: str},  # words for people are English in JSON
        template_config=TemplateConfig(
            directory=ROOT / "templates",
            engine=JinjaTemplateEngine,
            engine_callback=lambda engine: _configure_templates(engine, settings),
        ),
        openapi_config=OpenAPIConfig(
            title="Pizzeria API",
            version="0.1.0",
            path="/schema",
            render_plugins=[openapi.SwaggerFromStatic()],
            components=openapi.COMPONENTS,
        ),
        exception_handlers={
            DomainError: web.domain_error_handler,
            ValidationException: web.validation_error_handler,
            HTTPException: web.http_error_handler,
            DBAPIError: web.unavailable_dependency_handler,
            SQLAlchemyTimeout: web.unavailable_dependency_handler,
            # PostgreSQL restarting ("the database system is starting up"), shutting down,
            # or out of connections: asyncpg raises these unwrapped from a pool connect
            **{error: web.unavailable_dependency_handler for error in web.POSTGRES_AWAY},
            RedisConnectionError: web.unavailable_dependency_handler,
            RedisTimeoutError: web.unavailable_dependency_handler,
            RedisClusterException: web.unavailable_dependency_handler,  # a cluster away
            # ConnectionError (refused, reset, aborted), TimeoutError (a statement or connect
            # PostgreSQL did not answer: DATABASE_TIMEOUT_SECONDS) and a PostgreSQL socket
            # file gone (the embedded one stopped) are OSErrors; any other OSError: 500
            OSError: web.unavailable_dependency_handler,
            Exception: web.internal_error_handler,
        },
        before_send=[security_headers_hook(settings), lifecycle.close_connections_while_draining],
        before_request=bodies.check_json_body,
        request_max_body_size=bodies.MAX_BODY,
        guards=[access_guard],
        debug=settings.debug,
        logging_config=None,
    )
    openapi.document_errors(app)
    return app
