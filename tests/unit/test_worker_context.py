"""The ``ctx`` every job gets is built in one place (``workers.context``) and has every
key its type promises: a handler never meets a ``KeyError`` the type checker allowed."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.delivery.gateway import HttpCourierGateway
from app.delivery.tasks import CourierContext
from app.payment.provider import HttpPaymentProvider
from app.payment.tasks import PaymentContext
from app.platform.settings import get_settings
from app.platform.worker import WorkerContext
from workers.context import courier_context, payment_context, worker_context


def _missing(ctx: Any, shape: Any) -> set[str]:
    return set(shape.__required_keys__) - set(ctx)


async def test_each_workers_context_has_every_key_its_type_promises() -> None:
    settings = get_settings()
    redis = Redis()  # never connects: nothing here talks to Redis
    base = worker_context(settings, async_sessionmaker(), redis=redis, state_redis=redis)
    provider = HttpPaymentProvider.from_settings(settings)
    gateway = HttpCourierGateway.from_settings(settings)
    try:
        payment = payment_context(base, provider)
        courier = courier_context(base, gateway)
        assert _missing(base, WorkerContext) == set()
        assert _missing(payment, PaymentContext) == set()
        assert _missing(courier, CourierContext) == set()
        assert payment["payment_breaker"].name == "payment"
        assert courier["courier_breaker"].name == "courier"
    finally:
        await provider.aclose()
        await gateway.aclose()
        await redis.aclose()
