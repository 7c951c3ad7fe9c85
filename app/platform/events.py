"""The event envelope that travels from the outbox to every subscriber."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A domain event as subscribers receive it (a plain JSON-able job argument)."""

    id: UUID
    type: str
    aggregate_type: str
    aggregate_id: str
    correlation_id: str
    causation_id: str | None
    occurred_at: datetime
    payload: dict[str, Any]

    def to_job_arg(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    @classmethod
    def from_job_arg(cls, raw: dict[str, Any]) -> Event:
        return msgspec.convert(raw, cls)
