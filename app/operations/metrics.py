"""``GET /metrics``: the web process's metrics plus the shop-wide gauges, in one scrape.

When ``METRICS_TOKEN`` is set, only ``Authorization: Bearer <token>`` gets an answer (the
scraper's credentials); without it the endpoint is open, as usual inside a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.operations import watchdog
from app.platform import deadletters, metrics
from app.platform.access import access
from app.platform.partners import PartnerBreakers
from app.platform.queues import QUEUES
from app.platform.settings import Settings


@get("/metrics", opt=access("public"), include_in_schema=False)
async def metrics_endpoint(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    breakers: NamedDependency[PartnerBreakers],
    session_factory: NamedDependency[async_sessionmaker[AsyncSession]],
    state: State,  # the queues' Redis client, which only the queue depths need
) -> Response[Any]:
    if not metrics.authorized(
        request.headers.get("authorization"), settings.observability.metrics_token
    ):
        return Response(
            {"status_code": 401, "detail": "metrics need the scraper's bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )

    async def breaker_states() -> Sequence[tuple[str, str]]:
        return [(s.name, s.state) for s in await breakers.states()]

    async def dead_letters(session: AsyncSession) -> float:
        return float(await deadletters.count_active(session))

    async def stuck_orders(session: AsyncSession) -> float:
        """What the watchdog finds stuck (the board and ``/health`` show the same)."""
        return float(len((await watchdog.stalled(session, settings.pipeline)).findings))

    await metrics.refresh_shop_gauges(
        session_factory, state.queue_redis, QUEUES, breaker_states, dead_letters, stuck_orders
    )
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
