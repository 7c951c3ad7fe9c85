"""What the order page says about where an order is (the badge and ``data-stage``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from app.status.schemas import OrderDocument


def document(status: str, delivery_status: str | None) -> OrderDocument:
    return OrderDocument(
        id=uuid.uuid4(),
        status=status,
        items=[],
        total_amount=15_900,
        currency="KRW",
        address="Via Roma 1",
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
        payment=None,
        delivery={"status": delivery_status} if delivery_status else None,
        coupon=None,
        refund=None,
        timeline=[],
    )


@pytest.mark.parametrize(
    ("status", "delivery", "stage", "progress", "badge"),
    [
        ("placed", None, None, None, "placed"),
        ("paid", None, "queued", "queued", "queued"),
        ("paid", "baking", "baking", "baking", "baking"),
        ("paid", "delivered", "delivered", "delivered", "delivered"),
        # fulfilled: the badge says so, the progress stays on its last step
        ("fulfilled", "delivered", None, "delivered", "fulfilled"),
        ("refunded", "returned", None, "delivered", "refunded"),
        ("cancelled", "cancelled", None, None, "cancelled"),
    ],
)
def test_the_stage_the_progress_shows_outlives_the_delivery(
    status: str, delivery: str | None, stage: str | None, progress: str | None, badge: str
) -> None:
    order = document(status, delivery)
    assert (order.stage, order.progress_stage, order.shown_status) == (stage, progress, badge)
