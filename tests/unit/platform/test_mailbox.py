"""A live stream's mailbox: what the process's one subscription tells each stream."""

from __future__ import annotations

import asyncio

from app.platform.pubsub import RECONNECT, Mailbox
from app.platform.sse import RECONNECTING, next_update


async def test_a_burst_told_while_the_stream_was_busy_is_taken_at_once_in_order() -> None:
    mailbox = Mailbox()
    for n in range(3):
        mailbox.put(f"order:{n}")
    assert await mailbox.take() == ["order:0", "order:1", "order:2"]


async def test_a_waiting_stream_wakes_on_the_first_notification() -> None:
    mailbox = Mailbox()
    taking = asyncio.create_task(mailbox.take())
    await asyncio.sleep(0)
    assert not taking.done()
    mailbox.put("order:1")
    assert await asyncio.wait_for(taking, 1) == ["order:1"]


async def test_a_full_mailbox_drops_news_but_never_the_reconnect() -> None:
    mailbox = Mailbox(limit=2)
    for n in range(5):
        mailbox.put(f"order:{n}")
    mailbox.force(RECONNECT)
    assert await mailbox.take() == ["order:1", RECONNECT]


async def test_next_update_says_keep_alive_news_or_reconnect() -> None:
    mailbox = Mailbox()
    assert await next_update(mailbox, keep_alive=0.01) is None
    mailbox.put("order:1")
    mailbox.put("order:1")
    assert await next_update(mailbox, keep_alive=1) is True
    mailbox.put("order:1")
    mailbox.force(RECONNECT)
    assert await next_update(mailbox, keep_alive=1) is RECONNECTING
