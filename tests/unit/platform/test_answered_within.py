"""``answered_within``: how long a worker or the relay waits for a Redis that may hang.
It bounds silence, not work: a caller that hears an answer (``heard``) starts it again."""

from __future__ import annotations

import asyncio

import pytest

from app.platform.redis import RedisSilent, answered_within, heard


async def test_silence_longer_than_the_bound_is_a_silent_redis() -> None:
    with pytest.raises(RedisSilent, match=r"no answer within 0\.05 s"):
        async with answered_within(0.05):
            await asyncio.sleep(10)


async def test_the_bound_starts_again_at_each_answer() -> None:
    """Five round trips of 0.1 s each within a bound of 0.3 s: slow, but never silent."""
    async with answered_within(0.3) as timer:
        for _ in range(5):
            await asyncio.sleep(0.1)
            heard(timer, 0.3)


async def test_another_timeout_inside_is_not_taken_for_silence() -> None:
    with pytest.raises(TimeoutError) as raised:
        async with answered_within(60):
            raise TimeoutError("a statement's own timeout")
    assert not isinstance(raised.value, RedisSilent)


async def test_no_bound_waits_as_long_as_it_takes() -> None:
    async with answered_within(None) as timer:
        await asyncio.sleep(0.01)
        heard(timer, 1.0)  # nothing to restart
    assert timer is None
