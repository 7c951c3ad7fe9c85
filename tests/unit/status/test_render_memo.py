"""Frames of a live stream rendered once per version and process, however many watch."""

from __future__ import annotations

import asyncio

import pytest

from app.status.live import RenderMemo


async def test_concurrent_viewers_share_one_rendering_until_it_is_stale() -> None:
    made: list[int] = []

    async def render() -> str:
        made.append(1)
        await asyncio.sleep(0.01)
        return "frame"

    memo: RenderMemo[tuple[str, int], str] = RenderMemo(ttl=0.2)
    frames = await asyncio.gather(*(memo.get(("order", 2), render) for _ in range(100)))
    assert frames == ["frame"] * 100 and len(made) == 1
    await memo.get(("order", 3), render)
    assert len(made) == 2, "another version is rendered on its own"
    await asyncio.sleep(0.25)
    await memo.get(("order", 2), render)
    assert len(made) == 3, "a stale rendering is made again"


async def test_a_failed_rendering_is_not_remembered() -> None:
    calls = 0

    async def render() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database away")
        return "frame"

    memo: RenderMemo[str, str] = RenderMemo()
    with pytest.raises(RuntimeError):
        await memo.get("k", render)
    assert await memo.get("k", render) == "frame"
