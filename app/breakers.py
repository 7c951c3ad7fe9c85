"""The partner circuit breakers, built the same way for web and worker processes: each
with its partner's failure exceptions (the composition knows both adapters)."""

from __future__ import annotations

from redis.asyncio import Redis

from app.delivery.gateway import CourierUnavailable
from app.payment.provider import ProviderUnavailable
from app.platform.breaker import BreakerPolicy, CircuitBreaker
from app.platform.partners import PartnerBreakers
from app.platform.settings import Settings

PAYMENT = "payment"
COURIER = "courier"


def payment_breaker(redis: Redis, settings: Settings) -> CircuitBreaker:
    return CircuitBreaker(
        redis, PAYMENT, BreakerPolicy.from_settings(settings), (ProviderUnavailable,)
    )


def courier_breaker(redis: Redis, settings: Settings) -> CircuitBreaker:
    return CircuitBreaker(
        redis, COURIER, BreakerPolicy.from_settings(settings), (CourierUnavailable,)
    )


def partner_breakers(redis: Redis, settings: Settings) -> PartnerBreakers:
    return PartnerBreakers(payment_breaker(redis, settings), courier_breaker(redis, settings))
