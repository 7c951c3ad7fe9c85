"""The partner circuit breakers as the contexts see them: one for the payment provider,
one for the delivery partner, and the words for a refusal while one is open.

The composition (``app.breakers``) builds them with each partner's failure exceptions;
their state lives in Redis, so a breaker opened by a worker's failing calls refuses new
orders in every web process at once.
"""

from __future__ import annotations

from app.platform.breaker import (
    BreakerState,
    CircuitBreaker,
    read_states,
    refuse_if_open,
)
from app.platform.i18n import N_


class PartnerBreakers:
    """Both breakers; also the ordering context's ``PartnerGate``."""

    def __init__(self, payment: CircuitBreaker, courier: CircuitBreaker) -> None:
        self.payment = payment
        self.courier = courier

    def all(self) -> tuple[CircuitBreaker, ...]:
        return (self.payment, self.courier)

    async def ensure_open_for_orders(self) -> None:
        """New orders need both partners: refuse at once (503) while either breaker is
        open. The states are read in one round trip (every order asks), and not at all
        for a breaker this process saw closed within its lease."""
        unleased = [b for b in self.all() if b.leased_generation() is None]
        if unleased:
            for state in await read_states(unleased):
                refuse_if_open(state)

    async def ensure_open_for_refunds(self) -> None:
        """A refund needs the delivery partner for the return trip (NFR2.4)."""
        await self.courier.ensure_closed()

    async def states(self) -> list[BreakerState]:
        return [state for state in await read_states(self.all()) if state is not None]


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
