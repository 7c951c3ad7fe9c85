"""The board shows the orders waiting longest, and says how many newer ones it leaves
off (operator walk: with about 2,000 deliveries waiting it showed the oldest 500 and
nothing more, so new orders silently stopped appearing)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.models import Role
from app.status import service as status
from app.status.models import BoardCard
from app.status.service import board_cards
from tests.integration.test_form_errors import signed_in
from tests.support import webapp

#: long before any card another test writes: these three are the oldest on the board
LONG_AGO = datetime(2001, 1, 1, 12, 0, tzinfo=UTC)


def _card(minutes: int) -> BoardCard:
    return BoardCard(
        delivery_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        status="queued",
        courier_status="assigned",
        rider=None,
        items=[],
        address="1 Crust Lane",
        paid_at=LONG_AGO + timedelta(minutes=minutes),
        version=1,
        history=[],
    )


async def test_the_board_says_how_many_newer_cards_it_leaves_off(
    migrated_db: str,
    sandbox_url: str,
    session_factory: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cards = [_card(minutes) for minutes in (0, 1, 2)]
    async with session_factory() as session:
        session.add_all(cards)
        await session.commit()
    try:
        async with session_factory() as session:
            shown = await board_cards(session, limit=2)
            everything = await board_cards(session)
        assert [c.delivery_id for c in shown.entries] == [c.delivery_id for c in cards[:2]]
        assert shown.not_shown == len(everything.entries) - 2 >= 1
        assert everything.not_shown == 0

        async with webapp.running() as app, webapp.client(app) as browser:
            await signed_in(browser, session_factory, Role.staff)
            whole = (await browser.get("/staff/board")).text
            monkeypatch.setattr(status, "BOARD_LIMIT", 2)
            cut = (await browser.get("/staff/board")).text
        assert 'id="board-not-shown"' not in whole
        assert 'id="board-not-shown"' in cut and "not on it" in cut
    finally:
        async with session_factory() as session:
            ids = [c.delivery_id for c in cards]
            await session.execute(delete(BoardCard).where(BoardCard.delivery_id.in_(ids)))
            await session.commit()
