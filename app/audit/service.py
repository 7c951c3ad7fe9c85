"""Recording staff actions. Call ``record`` in the transaction of the action itself, so
an action and its audit entry exist together or not at all."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEntry
from app.platform.db import utcnow
from app.platform.security import Principal


def record(
    session: AsyncSession,
    actor: Principal,
    action: str,
    target: str,
    **detail: Any,
) -> None:
    session.add(
        AuditEntry(
            at=utcnow(),
            actor_id=actor.user_id,
            actor_role=actor.role,
            action=action,
            target=target,
            detail={k: str(v) for k, v in detail.items()},
        )
    )


async def recent(session: AsyncSession, limit: int = 200) -> list[AuditEntry]:
    rows = await session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
    return list(rows)
