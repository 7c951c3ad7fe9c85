"""What a board card tells the kitchen, worked out from the card alone (no browser):
the rider's name only while a rider has the order, a new order for its first minute,
and the numbers board.js ages the card with between renders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.delivery.pages import NEW_ORDER_SECONDS, _card
from app.platform.settings import get_settings
from app.status import eta
from app.status.models import BoardCard
from app.status.service import BoardEntry

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STATS = eta.fallback_stats({s: 5.0 for s in eta.STAGES})


def board_card(status: str, courier: str = "assigned", paid_ago: float = 30.0) -> BoardEntry:
    """A card as the board pages get it from the read side."""
    row = BoardCard(
        delivery_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        status=status,
        courier_status=courier,
        rider="Elena C.",
        items=[],
        address="Via Roma 1",
        paid_at=NOW - timedelta(seconds=paid_ago),
        version=1,
        history=[],
    )
    return BoardEntry.of(row)


@pytest.mark.parametrize(
    ("status", "courier", "label"),
    [
        ("queued", "assigned", "Rider Elena C."),
        ("out_for_delivery", "assigned", "Rider Elena C."),
        ("queued", "requested", "Finding a rider"),
        ("delivered", "assigned", ""),
        ("return_requested", "assigned", ""),
        ("ready", "cancelled", ""),
    ],
)
def test_the_riders_name_shows_only_while_a_rider_has_the_order(
    status: str, courier: str, label: str
) -> None:
    shown = _card(board_card(status, courier), NOW, get_settings(), STATS).rider_label
    assert str(shown) == label


def test_a_queued_card_is_new_for_its_first_minute_only() -> None:
    settings = get_settings()
    fresh = _card(board_card("queued", paid_ago=20), NOW, settings, STATS)
    assert fresh.new_for == NEW_ORDER_SECONDS - 20
    assert (
        _card(board_card("queued", paid_ago=NEW_ORDER_SECONDS + 1), NOW, settings, STATS).new_for
        == 0
    )
    # only the queue holds new orders: a card the kitchen has started is not new
    assert _card(board_card("preparing", paid_ago=20), NOW, settings, STATS).new_for == 0


def test_the_card_carries_its_age_and_the_time_left_to_its_promise() -> None:
    card = _card(board_card("preparing", paid_ago=125), NOW, get_settings(), STATS)
    assert card.age_seconds == 125 and card.minutes == 2
    assert card.promised is not None and card.promise_in is not None
    assert card.promise_in == int((card.promised - NOW).total_seconds())
    assert card.tracked
    assert not _card(board_card("delivered"), NOW, get_settings(), STATS).tracked
