"""Building the ``ctx`` every job gets (``app.platform.worker.WorkerContext``), in one
place: the workers' start-up (``workers.base``, ``workers.payment``, ``workers.delivery``)
and the tests that call handlers in-process use these same functions."""

from __future__ import annotations

import functools
from typing import Any, cast

from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.breakers import courier_breaker, payment_breaker
from app.delivery.gateway import CourierGateway
from app.delivery.tasks import CourierContext
from app.payment.provider import PaymentProvider
from app.payment.tasks import PaymentContext
from app.platform.relay import enqueue
from app.platform.settings import Settings
from app.platform.uow import FollowUp, follow_up_after_commit
from app.platform.worker import WorkerContext
from app.subscriptions import AFTER_COMMIT, WITH_CAPTURE


def worker_context(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
    state_redis: Redis,
) -> WorkerContext:
    """What every handler may use."""
    return WorkerContext(
        settings=settings,
        session_factory=session_factory,
        redis=redis,
        state_redis=state_redis,
    )


def payment_context(ctx: WorkerContext, provider: PaymentProvider) -> PaymentContext:
    """``ctx`` plus the payment provider and its breaker (state in ``state_redis``)."""
    breaker = payment_breaker(ctx["state_redis"], ctx["settings"])
    # a dict, not ``PaymentContext(**ctx, …)``: mypy wants every optional key of the
    # ``**`` form named (``ready_with_capture`` adds two later, on the payment worker)
    return cast(PaymentContext, {**ctx, "payment_provider": provider, "payment_breaker": breaker})


def courier_context(ctx: WorkerContext, gateway: CourierGateway) -> CourierContext:
    """``ctx`` plus the delivery partner's gateway and its breaker."""
    return CourierContext(
        **ctx,
        courier_gateway=gateway,
        courier_breaker=courier_breaker(ctx["state_redis"], ctx["settings"]),
    )


def follow_up(ctx: dict[str, Any], jobs: ArqRedis) -> None:
    """Run the follow-ups of ``app.subscriptions.AFTER_COMMIT`` after every unit of work
    on ``ctx``'s session factory, with ``ctx``'s clients (``courier_context``: the paid
    order's rider and ticket), handing over what they cannot finish through ``jobs``."""
    follow_ups = {
        event.TYPE: [FollowUp(sub, functools.partial(work, ctx)) for sub, work in runs]
        for event, runs in AFTER_COMMIT.items()
    }
    follow_up_after_commit(ctx["session_factory"], follow_ups, functools.partial(enqueue, jobs))


def ready_with_capture(ctx: dict[str, Any]) -> None:
    """Let the capture on ``ctx`` (a payment worker's, with ``courier_context``'s
    clients) book the paid order's rider before it records, and save the kitchen's
    ticket in its own transaction (``app.subscriptions.WITH_CAPTURE``)."""
    prepare, release = WITH_CAPTURE
    ctx["prepare_paid"] = functools.partial(prepare, ctx)
    ctx["release_unpaid"] = functools.partial(release, ctx)
