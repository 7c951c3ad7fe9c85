"""SharedWork: the streams a notification woke share one piece of work per key."""

from __future__ import annotations

import asyncio

from app.platform.sse import SharedWork


class Counted:
    """Work that counts how often it was made, and waits until released."""

    def __init__(self) -> None:
        self.made = 0
        self.release = asyncio.Event()

    async def make(self) -> int:
        self.made += 1
        made = self.made
        await self.release.wait()
        return made


async def test_callers_woken_by_one_notification_share_one_piece_of_work() -> None:
    shared: SharedWork[str, int] = SharedWork()
    work = Counted()
    callers = [asyncio.create_task(shared.get("board", 5, 5, work.make)) for _ in range(100)]
    await asyncio.sleep(0)
    work.release.set()
    assert await asyncio.gather(*callers) == [1] * 100
    assert work.made == 1


async def test_work_begun_before_a_callers_notification_is_not_shared_with_it() -> None:
    shared: SharedWork[str, int] = SharedWork()
    work = Counted()
    early = asyncio.create_task(shared.get("board", 5, 5, work.make))
    await asyncio.sleep(0)
    # a notification arrived after the first work began (count 6): it may have missed it
    late = asyncio.create_task(shared.get("board", 6, 6, work.make))
    joined = asyncio.create_task(shared.get("board", 6, 6, work.make))
    await asyncio.sleep(0)
    work.release.set()
    assert (await early, await late, await joined) == (1, 2, 2)
    assert work.made == 2


async def test_keys_do_not_share_and_finished_work_is_made_again() -> None:
    shared: SharedWork[str, int] = SharedWork()
    work = Counted()
    work.release.set()
    assert await shared.get("en", 1, 1, work.make) == 1
    assert await shared.get("ko", 1, 1, work.make) == 2
    assert await shared.get("en", 1, 1, work.make) == 3, "done work is not a cache"


async def test_a_viewer_that_leaves_cancels_nothing() -> None:
    shared: SharedWork[str, int] = SharedWork()
    work = Counted()
    leaving = asyncio.create_task(shared.get("board", 1, 1, work.make))
    staying = asyncio.create_task(shared.get("board", 1, 1, work.make))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    work.release.set()
    assert await staying == 1
    assert work.made == 1
