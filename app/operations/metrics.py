"""``GET /metrics``: the web process's metrics plus the shop-wide gauges, in one scrape.

When ``METRICS_TOKEN`` is set, only ``Authorization: Bearer <token>`` gets an answer (the
scraper's credentials); without it the endpoint is open, as usual inside a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncConnection

from app.breakers import PartnerBreakers
from app.ordering import service as ordering
from app.platform import metrics
from app.platform.access import access
from workers import QUEUES


@get("/metrics", opt=access("public"), include_in_schema=False)
async def metrics_endpoint(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    settings = state.settings
    if not metrics.authorized(
        request.headers.get("authorization"), settings.observability.metrics_token
    ):
        return Response(
            {"status_code": 401, "detail": "metrics need the scraper's bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    breakers: PartnerBreakers = state.breakers
    minutes = settings.observability.stuck_order_minutes

    async def breaker_states() -> Sequence[tuple[str, str]]:
        return [(s.name, s.state) for s in await breakers.states()]

    async def stuck_orders(conn: AsyncConnection) -> float:
        return float(await ordering.count_stuck_orders(conn, minutes))

    await metrics.refresh_shop_gauges(
        state.engine, state.redis, QUEUES, breaker_states, stuck_orders
    )
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
