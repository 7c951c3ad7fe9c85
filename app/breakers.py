"""The partner circuit breakers, built the same way for web and worker processes.

Their state lives in Redis, so a breaker opened by a worker's failing calls refuses new
orders in every web process at once.
"""

from __future__ import annotations

from redis.asyncio import Redis

from app.delivery.gateway import CourierUnavailable
from app.payment.provider import ProviderUnavailable
from app.platform.breaker import BreakerOpen, BreakerPolicy, BreakerState, CircuitBreaker
from app.platform.i18n import N_
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


class PartnerBreakers:
    """Both breakers; also the ordering context's ``PartnerGate``."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.payment = payment_breaker(redis, settings)
        self.courier = courier_breaker(redis, settings)

    def all(self) -> tuple[CircuitBreaker, ...]:
        return (self.payment, self.courier)

    async def ensure_open_for_orders(self) -> None:
        """New orders need both partners: refuse at once (503) while either breaker is open."""
        for breaker in self.all():
            try:
                await breaker.ensure_closed()
            except BreakerOpen as exc:
                raise BreakerOpen(exc.name, exc.retry_after) from exc

    async def ensure_open_for_refunds(self) -> None:
        """A refund needs the delivery partner for the return trip (NFR2.4)."""
        await self.courier.ensure_closed()

    async def states(self) -> list[BreakerState]:
        states = []
        for breaker in self.all():
            state = await breaker.state_or_none()
            if state is not None:
                states.append(state)
        return states


def refusal_message(retry_after: int, what: str = "orders") -> str:
    if what == "refunds":
        return N_(
            "We can't take refunds for about %(seconds)s seconds, please try again.",
            seconds=retry_after,
        )
    return N_(
        "We can't take orders for about %(seconds)s seconds, please try again.",
        seconds=retry_after,
    )
