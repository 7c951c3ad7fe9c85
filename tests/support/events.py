"""Events as a context would emit them, for tests that hand one to a handler directly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from app.delivery.events import DeliveryChanged
from app.platform.events import DomainEvent, Event
from app.refund.events import RefundChanged


def _defaults(contract: type[DomainEvent]) -> dict[str, Any]:
    if issubclass(contract, DeliveryChanged):
        return {
            "delivery_id": uuid.uuid4(),
            "status": "delivered",
            "courier_status": "delivered",
            "items": [],
            "address": "Via Roma 1, Napoli",
            "version": 6,
        }
    if issubclass(contract, RefundChanged):
        return {
            "refund_id": uuid.uuid4(),
            "status": "requested",
            "reason_code": "cold",
            "reason": "",
            "amount": 1000,
            "currency": "EUR",
            "created_at": datetime.now(UTC),
            "version": 1,
        }
    return {}


def emitted(contract: type[DomainEvent], *, aggregate_id: Any = None, **fields: Any) -> Event:
    """The envelope a subscriber would receive for ``contract`` with ``fields`` (the
    rest filled in with plausible values)."""
    data = contract(**{**_defaults(contract), **fields})
    order_id = fields.get("order_id", uuid.uuid4())
    return Event(
        id=uuid.uuid4(),
        type=contract.TYPE,
        aggregate_type=contract.AGGREGATE,
        aggregate_id=str(aggregate_id or uuid.uuid4()),
        correlation_id=str(order_id),
        causation_id=None,
        occurred_at=datetime.now(UTC),
        payload=data.payload(),
    )
