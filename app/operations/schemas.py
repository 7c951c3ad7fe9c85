"""Operations API bodies."""

from __future__ import annotations

from typing import Any

import msgspec


class PartnerKnobsRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """``PUT /api/admin/partners/{partner}``: any subset of a sandbox partner's knobs
    (``null``: left as it is). Typed, so ``"down": "maybe"`` or ``"latencyMs": true`` is a
    422 naming the field rather than a guess, and a misspelt knob is refused instead of
    ignored."""

    latency_ms: int | None = None
    error_rate: float | None = None
    down: bool | None = None
    #: the partner acts at once but answers this late (what GET shows can be PUT back)
    answer_delay_ms: int | None = None

    def knobs(self) -> dict[str, Any]:
        """The knobs given, in the service's names."""
        given = msgspec.structs.asdict(self)
        return {name: value for name, value in given.items() if value is not None}
