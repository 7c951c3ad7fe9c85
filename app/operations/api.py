"""Staff API: the sandbox partners' knobs and the circuit breakers."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.operations import service
from app.operations.schemas import PartnerKnobsRequest
from app.platform.access import access
from app.platform.partners import PartnerBreakers
from app.platform.security import Principal
from app.platform.settings import Settings


class OperationsApi(Controller):
    opt = access("api-staff")
    path = "/api/admin"
    tags = ["operations (staff)"]

    @get("/partners")
    async def partners(
        self, settings: NamedDependency[Settings], staff_caller: NamedDependency[Principal]
    ) -> dict[str, Any]:
        return await service.partner_knobs(settings)

    @put("/partners/{partner:str}")
    async def set_partner(
        self,
        partner: FromPath[str],
        data: JSONBody[PartnerKnobsRequest],
        settings: NamedDependency[Settings],
        staff_caller: NamedDependency[Principal],
        db: NamedDependency[AsyncSession],
    ) -> dict[str, Any]:
        """``{latencyMs, errorRate, down}``, any subset."""
        return await service.change_knobs(db, settings, staff_caller, partner, data.knobs())

    @get("/breakers")
    async def breakers(
        self, breakers: NamedDependency[PartnerBreakers], staff_caller: NamedDependency[Principal]
    ) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "state": s.state,
                "failureRate": s.failure_rate,
                "slowRate": s.slow_rate,
                "calls": s.calls,
                "retryAfter": s.retry_after,
            }
            for s in await breakers.states()
        ]
